"""``zoo predict RUN clip.mp4 --output out.mp4`` (issue 28): every frame written at the source's
rate, the predicted ones drawn on, one JSON line per predicted frame; bad input is one line."""

import json
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import main
from tests.cli.test_model_files_cli import _error_line

av = pytest.importorskip("av")


def make_clip(path, *, frames=8, size=48, rate=12):
    """A tiny H.264 clip: a red square moving over grey."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available
                                      else "mpeg4", rate=rate)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((size, size, 3), 120, np.uint8)
            image[10:30, 2 + 2 * i:22 + 2 * i] = (220, 30, 30)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def _read(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return rate, frames


def predict_clip(run, tmp_path, *, size, frames=4):
    """``zoo predict RUN clip.mp4 --output out.mp4`` on a tiny clip of ``size`` px: the written
    clip has every frame at the source's rate; returns the JSON lines, one per frame."""
    clip = make_clip(tmp_path / "clip.mp4", frames=frames, size=size)
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(main, ["predict", str(run), str(clip), "--output", str(out)])
    assert result.exit_code == 0, result.output
    rate, written = _read(out)
    assert rate == 12 and len(written) == frames
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(frames))
    return lines


def test_a_clip_is_predicted_frame_by_frame_at_its_own_rate(tmp_path, trained_run):
    clip = make_clip(tmp_path / "clip.mp4")
    out = tmp_path / "out.mp4"
    result = CliRunner().invoke(main, ["predict", str(trained_run.run_dir), str(clip),
                                       "--output", str(out), "--every", "3", "-k", "2"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (8 frames at 12 fps, 3 predicted) and {tmp_path / 'out.jsonl'}" \
        in result.output
    rate, frames = _read(out)
    _, source = _read(clip)
    assert rate == 12 and len(frames) == 8
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == [0, 3, 6]
    assert [line["time"] for line in lines] == pytest.approx([0, 0.25, 0.5])
    assert all(len(line["predictions"]) == 2 for line in lines)
    # predicted frames carry their labels (a dark band, top left); the others are the source's
    band = (slice(0, 12), slice(0, 40))
    for i in range(8):
        changed = np.abs(frames[i][band].astype(int) - source[i][band]).mean()
        assert (changed > 20) == (i % 3 == 0), (i, changed)


def test_video_errors_are_one_line_and_nothing_is_replaced(tmp_path, trained_run):
    run = str(trained_run.run_dir)
    clip = make_clip(tmp_path / "clip.mp4", frames=2)
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    line = _error_line(CliRunner().invoke(main, ["predict", run, str(fake), "-o",
                                                 str(tmp_path / "o.mp4")]))
    assert line.startswith(f"Error: {str(fake)!r} is not a readable video ("), line
    mine = tmp_path / "mine.jsonl"
    mine.write_text("my notes")
    line = _error_line(CliRunner().invoke(main, ["predict", run, str(clip), "-o",
                                                 str(tmp_path / "mine.mp4")]))
    assert line == (f"Error: {str(mine)!r} already exists, and a video prediction never "
                    f"replaces a file; choose another --output, or move it away")
    assert mine.read_text() == "my notes" and not (tmp_path / "mine.mp4").exists()
    line = _error_line(CliRunner().invoke(main, ["predict", run, str(clip), "-o", str(clip)]))
    assert "is the video being predicted" in line
    result = CliRunner().invoke(main, ["predict", run, str(clip)])
    assert result.exit_code == 2 and "a video needs --output" in result.output


def test_a_missing_pyav_is_named_with_how_to_install(tmp_path, trained_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    line = _error_line(CliRunner().invoke(main, ["predict", str(trained_run.run_dir),
                                                 str(tmp_path / "clip.mp4"), "-o",
                                                 str(tmp_path / "out.mp4")]))
    assert line == ("Error: reading and writing video needs PyAV, which is not installed; "
                    "pip install 'cnn-zoo[video]' (or pip install av)")


def test_each_task_draws_its_prediction_on_a_frame():
    from transfer.tasks import Prediction, get_task

    frame = np.full((32, 32, 3), 100, np.uint8)
    top = Prediction("f", ("cat", "dog"), (0.9, 0.1))
    assert (get_task("classification").draw_frame(frame, top) != frame).any()
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 1
    drawn = get_task("segmentation").draw_frame(frame, Prediction("f", arrays={"mask": mask}))
    assert (drawn[0, 0] == 50).all()  # background's black, blended in as the overlays are
    assert (drawn[16, 16] != drawn[0, 0]).any()
    boxes = Prediction("f", ("cat",), (0.8,), arrays={
        "boxes": np.array([[4.0, 10, 20, 28]]), "scores": np.array([0.8]),
        "classes": np.array([0])})
    drawn = get_task("detection").draw_frame(frame, boxes)
    assert drawn.shape == frame.shape and (drawn[20, 4] != frame[20, 4]).any()
