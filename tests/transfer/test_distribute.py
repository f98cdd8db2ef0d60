"""tf.distribute: MirroredStrategy over two logical CPU devices, MultiWorker over two local
processes on 127.0.0.1. Each runs in fresh processes, since devices are fixed at TF start-up."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

SPLIT_CPU = textwrap.dedent("""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
""")

TRAIN = textwrap.dedent("""
    import json, logging, sys
    import transfer
    logging.basicConfig(level=logging.INFO)
    result = transfer.train(sys.argv[1], output=sys.argv[2], model="lenet5",
                            mode="full-retrain", weights=None, epochs=2, batch_size=4,
                            strategy=sys.argv[3], verbose=0, early_stopping_patience=0)
    print(json.dumps({"replicas": result.config.batch_size,
                      "acc": result.metrics["val"]["top1_accuracy"],
                      "history": result.history}))
""")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mirrored_run(image_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("mirrored") / "run"
    proc = subprocess.run([sys.executable, "-c", SPLIT_CPU + TRAIN, str(image_folder), str(out),
                           "mirrored"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_mirrored_strategy_on_two_logical_cpus(mirrored_run):
    out, proc = mirrored_run
    assert "2 replicas: global batch 8, learning rates scaled by 2" in proc.stderr
    history = json.loads((out / "history.json").read_text())
    # 30 training images, global batch 8 -> 4 steps; LR 1e-3 * 2 replicas.
    assert [row["learning_rate"] for row in history] == pytest.approx([2e-3, 2e-3])
    assert (out / "saved_model" / "saved_model.pb").is_file()


@pytest.mark.slow  # two TensorFlow processes side by side: the suite's longest test
def test_multiworker_strategy_with_two_local_processes(image_folder, tmp_path, mirrored_run):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-c", TRAIN, str(image_folder), str(tmp_path / "mw"),
             "multiworker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True))
    outputs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, stderr[-3000:]
            outputs.append((stdout, stderr))
    finally:
        for proc in procs:
            proc.kill()
    assert "2 replicas: global batch 8, learning rates scaled by 2" in outputs[0][1]
    chief = json.loads(outputs[0][0].strip().splitlines()[-1])
    worker = json.loads(outputs[1][0].strip().splitlines()[-1])
    # Synchronous training: both workers hold the same model, hence the same history.
    losses = [r[k] for r in chief["history"] for k in ("loss", "val_loss")]
    assert losses == [r[k] for r in worker["history"] for k in ("loss", "val_loss")]
    # Two workers of one replica each train exactly as two mirrored replicas in one process:
    # same global batches, same averaged gradients.
    mirrored = json.loads((mirrored_run[0] / "history.json").read_text())
    assert losses == pytest.approx([r[k] for r in mirrored for k in ("loss", "val_loss")],
                                    rel=1e-5)
    # Only the chief writes the run directory.
    assert (tmp_path / "mw" / "saved_model" / "saved_model.pb").is_file()
    assert json.loads((tmp_path / "mw" / "history.json").read_text()) == chief["history"]
