"""Where training runs: tf.distribute strategies, the chief worker, mixed precision.

``--strategy`` names one of: the default (one device), ``mirrored`` (all local GPUs, or the
logical CPU devices), ``multiworker`` (machines named by ``TF_CONFIG``) and ``tpu``. Errors in
the cluster spec, or a missing TPU, are one clear :class:`~transfer.errors.ConfigError` before
anything is trained.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

import keras

from transfer.errors import ConfigError

log = logging.getLogger(__name__)


def make_strategy(name: str):
    import tensorflow as tf

    if name == "mirrored":
        if not tf.config.list_logical_devices("GPU"):
            # No GPU: mirror over the logical CPU devices (one unless the CPU was split).
            return tf.distribute.MirroredStrategy(
                [d.name for d in tf.config.list_logical_devices("CPU")])
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        check_tf_config()
        return _multi_worker_strategy()
    if name == "tpu":
        tpu = os.environ.get("TPU_NAME")
        # Checked locally first: without a TPU the resolver would query the cloud's metadata
        # server, and fail only after its network retries.
        if not tpu and not tf.config.list_physical_devices("TPU"):
            raise ConfigError("--strategy tpu: this machine has no TPU; run on a TPU VM, or set "
                              "TPU_NAME to a TPU node's name or grpc:// address")
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu or "local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def check_tf_config() -> None:
    """Multi-worker training is configured by ``TF_CONFIG``; say so when it is missing or bad."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        log.warning("--strategy multiworker without TF_CONFIG: training as a single worker; set "
                    "TF_CONFIG on every machine to train across them (see the README)")
        return
    expected = ('expected {"cluster": {"worker": ["host:port", ...]}, "task": {"type": '
                '"worker", "index": N}}')
    try:
        spec = json.loads(raw)
        members = spec["cluster"][spec["task"]["type"]]
        index = int(spec["task"]["index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"TF_CONFIG is not a valid cluster spec ({type(exc).__name__}: "
                          f"{exc}); {expected}") from None
    if not 0 <= index < len(members):
        raise ConfigError(f"TF_CONFIG task index {index} is outside its {len(members)} "
                          f"{spec['task']['type']} address(es); {expected}")


def _multi_worker_strategy():
    """MultiWorkerMirroredStrategy whose ``reduce`` takes what Keras 3's ``fit`` passes it.

    ``fit`` reduces a whole ``(x, y)`` batch in one call to find the input shapes, and the
    scalar metric results with ``axis=0``. MirroredStrategy accepts both; the collective strategy
    behind MultiWorkerMirroredStrategy takes one value (TensorFlow's "support `value` being a
    nest" TODO) and fails on a batch axis that a scalar lacks. Reducing each value on its own,
    and a scalar across replicas only, is what those calls mean.
    """
    import tensorflow as tf

    class MultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            if tf.nest.is_nested(value):
                return tf.nest.map_structure(lambda v: self.reduce(reduce_op, v, axis), value)
            local = value.values[0] if isinstance(value, tf.distribute.DistributedValues) \
                else value
            if axis is not None and getattr(local, "shape", None) is not None \
                    and local.shape.rank == 0:
                axis = None
            return super().reduce(reduce_op, value, axis)

    return MultiWorkerStrategy()


def is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


@contextlib.contextmanager
def precision_policy(policy: str):
    """Build under a mixed-precision policy without leaking it into later models."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
