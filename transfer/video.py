"""Prediction on a video: every frame read, the frames due predicted, the task's drawing of the
prediction written onto them (:meth:`~transfer.tasks.Task.draw_frame`: top classes, a mask
overlay or boxes), and one JSON line per predicted frame beside the output video.

Frames are read and written with PyAV (FFmpeg inside its wheel), the ``video`` extra:
``pip install 'cnn-zoo[video]'``.

With ``every`` N, frames 0, N, 2N... are predicted and drawn on; the others are written
unchanged, so the output has the source's frame count and frame rate, its duration is the
source's, and no frame shows a prediction that was not made on it. The output is encoded at a
constant frame rate (the source's average); odd widths and heights lose their last column or
row, which H.264 in 4:2:0 cannot hold.
"""

from __future__ import annotations

import dataclasses
import json
import os
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from transfer.errors import ConfigError, DataError, RunDirError

if TYPE_CHECKING:
    from transfer.predict import Predictor

#: suffixes read as videos by ``zoo predict``, with the container each is written as
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska",
              ".webm": "webm", ".avi": "avi"}
VIDEO_SUFFIXES = tuple(CONTAINERS)
INSTALL = "pip install 'cnn-zoo[video]' (or pip install av)"
DEFAULT_RATE = Fraction(25)


def is_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named as a video (:data:`VIDEO_SUFFIXES`)."""
    return Path(path).suffix.lower() in CONTAINERS


def results_path(output: str | os.PathLike) -> Path:
    """The JSON-lines file of per-frame results beside ``output`` (``out.mp4`` -> ``out.jsonl``)."""
    return Path(output).with_suffix(".jsonl")


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise ConfigError(f"reading and writing video needs PyAV, which is not installed; "
                          f"{INSTALL}") from None
    return av


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What a video file holds: frames (``None`` where the container does not say), the
    average frame rate, and the frame size."""

    frames: int | None
    rate: Fraction
    width: int
    height: int


def _open(av: Any, path: Path) -> Any:
    try:
        container = av.open(str(path))
    except Exception as exc:  # noqa: BLE001  - FFmpeg's errors: not a video it reads
        raise DataError(f"{str(path)!r} is not a readable video ({_reason(exc)}); pass a video "
                        f"file FFmpeg reads ({', '.join(VIDEO_SUFFIXES)})") from None
    if not container.streams.video:
        container.close()
        raise DataError(f"{str(path)!r} holds no video stream; pass a video file")
    return container


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Open ``path`` and read its facts, without decoding it.

    Raises:
        ConfigError: PyAV is not installed.
        DataError: ``path`` is missing or not a video FFmpeg reads.
    """
    av, path = _av(), Path(path)
    if not path.is_file():
        raise DataError(f"video {str(path)!r} does not exist")
    with _open(av, path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or DEFAULT_RATE
        return VideoInfo(int(stream.frames) or None, Fraction(rate), stream.width, stream.height)


def check_video_output(video: str | os.PathLike, output: str | os.PathLike) -> None:
    """Refuse an ``output`` that is no video name, is the ``video`` read, or would replace a
    file: the output video and its ``.jsonl`` are always new files."""
    output = Path(output)
    if output.suffix.lower() not in CONTAINERS:
        raise ConfigError(f"--output {str(output)!r} for a video must be a video file ending "
                          f"in {', '.join(VIDEO_SUFFIXES)}")
    for path in (output, results_path(output)):
        if Path(os.path.abspath(path)) == Path(os.path.abspath(video)) or (
                path.exists() and Path(video).exists() and path.samefile(video)):
            raise RunDirError(f"--output {str(path)!r} is the video being predicted; choose "
                              f"another path")
        if path.exists() or path.is_symlink():
            raise RunDirError(f"{str(path)!r} already exists, and a video prediction never "
                              f"replaces a file; choose another --output, or move it away")
    if not output.parent.is_dir():
        raise RunDirError(f"the folder of --output {str(output)!r} does not exist; create it "
                          f"or choose another path")


@dataclasses.dataclass(frozen=True)
class VideoResult:
    """What :func:`predict_video` wrote."""

    output: Path
    results: Path
    frames: int
    predicted: int
    rate: Fraction


def predict_video(predictor: Predictor, video: str | os.PathLike, output: str | os.PathLike, *,
                  every: int = 1, batch_size: int = 32,
                  progress: Callable[[int], None] | None = None) -> VideoResult:
    """Predict frames of ``video`` and write them, drawn on, to ``output``, with one JSON line
    per predicted frame in ``output``'s ``.jsonl`` (:func:`results_path`).

    Args:
        predictor: a :class:`~transfer.predict.Predictor` made with ``per_image_files=False``.
        video: the video to read.
        output: the video to write (a new file; its suffix picks the container).
        every: predict frames 0, ``every``, 2 * ``every``...; the others are written unchanged.
        batch_size: frames per forward pass.
        progress: called with the number of frames written after each batch.

    Returns:
        The paths written and the counts of frames written and predicted.

    Raises:
        ConfigError: PyAV is missing or ``output`` is no video name.
        DataError: ``video`` is not a readable video, or a frame cannot be decoded.
        RunDirError: ``output`` or its ``.jsonl`` exists, or is ``video``.
    """
    if every < 1:
        raise ConfigError(f"every must be 1 or more, got {every}")
    info = probe_video(video)
    check_video_output(video, output)
    av, output, video = _av(), Path(output), Path(video)
    results = results_path(output)
    temporary = [output.with_name(f".{output.name}.{os.getpid()}.tmp"),
                 results.with_name(f".{results.name}.{os.getpid()}.tmp")]
    width, height = info.width - info.width % 2, info.height - info.height % 2
    frames = predicted = 0
    try:
        with _open(av, video) as source, \
                av.open(str(temporary[0]), "w", format=CONTAINERS[output.suffix.lower()]) as sink, \
                open(temporary[1], "w", encoding="utf-8") as lines:
            stream = sink.add_stream(_codec(av, output), rate=info.rate)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            pending: list[tuple[int, float, np.ndarray, bool]] = []

            def flush() -> None:
                nonlocal frames, predicted
                due = [(i, t, image) for i, t, image, wanted in pending if wanted]
                drawn = {}
                if due:
                    names = [f"{video}#frame={i}" for i, _, _ in due]
                    batch = np.stack([image for _, _, image in due]).astype(np.float32)
                    for (i, t, image), p in zip(due, predictor.predict_arrays(names, batch)):
                        drawn[i] = predictor.task.draw_frame(image, p)
                        row = {key: value for key, value in p.to_dict().items() if key != "path"}
                        lines.write(json.dumps({"frame": i, "time": round(t, 6), **row},
                                               ensure_ascii=False) + "\n")
                for i, _, image, _ in pending:
                    frame = av.VideoFrame.from_ndarray(
                        np.ascontiguousarray(drawn.get(i, image)[:height, :width]), format="rgb24")
                    frame.pts, frame.time_base = frames, 1 / info.rate
                    sink.mux(stream.encode(frame))
                    frames += 1
                predicted += len(due)
                if progress:
                    progress(len(pending))
                pending.clear()

            for index, (time, image) in enumerate(_frames(source, video, info.rate)):
                wanted = index % every == 0
                pending.append((index, time, image, wanted))
                if len(pending) >= batch_size:
                    flush()
            flush()
            sink.mux(stream.encode(None))
        if frames == 0:
            raise DataError(f"{str(video)!r} holds no frame that could be decoded")
        os.replace(temporary[0], output)
        os.replace(temporary[1], results)
    finally:
        for path in temporary:
            path.unlink(missing_ok=True)
    return VideoResult(output, results, frames, predicted, info.rate)


def _frames(container: Any, path: Path, rate: Fraction) -> Iterator[tuple[float, np.ndarray]]:
    """``(time in seconds, uint8 RGB frame)`` for each frame of the first video stream."""
    decoded = container.decode(video=0)
    index = 0
    while True:
        try:
            frame = next(decoded)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001  - a damaged stream: say where it broke
            raise DataError(f"{str(path)!r} cannot be decoded after frame {index} "
                            f"({_reason(exc)}); the video is damaged or cut short") from None
        time = frame.time if frame.time is not None else float(index / rate)
        yield float(time), frame.to_ndarray(format="rgb24")
        index += 1


def _codec(av: Any, output: Path) -> str:
    """H.264 where the container holds it and the FFmpeg build has it, VP9 for WebM."""
    if output.suffix.lower() == ".webm":
        return "libvpx-vp9" if "libvpx-vp9" in av.codecs_available else "libvpx"
    if output.suffix.lower() != ".avi" and "libx264" in av.codecs_available:
        return "libx264"
    return "mpeg4"
