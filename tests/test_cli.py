"""The command line as a whole: every subcommand's help, end-to-end runs on tiny inputs, exit codes
(0 ok / 1 runtime failure / 2 usage error), one-line errors without a traceback unless --debug."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipapro.cli import build_parser, main
from clipapro.commands import _common
from clipapro.io import save_label_png

from .conftest import make_photo

ROOT = Path(__file__).resolve().parent.parent
TINY_VIT = {"embed_dim": 16, "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
EXPECTED = {"bench", "box2mask", "demo", "evaluate", "evaluate-instances", "prompts", "pseudo-label", "refine",
            "scribble2mask", "segment", "train", "train-instances"}


def _subparsers():
    return build_parser()._subparsers._group_actions[0].choices


@pytest.fixture
def photo(tmp_path):
    return make_photo(tmp_path / "photo.png", 24, 32)


def _one_line_error(err: str, *needles):
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


# -- help ------------------------------------------------------------------------------------------
def test_every_issue_command_is_registered():
    assert EXPECTED <= set(_subparsers())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_help_lists_every_option_with_help_text(name, capsys):
    sub = _subparsers()[name]
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: clipapro {name}")
    for action in sub._actions:
        if action.help == "==SUPPRESS==":  # a deprecated spelling kept as a hidden alias
            continue
        assert action.help, f"{name}: {action.dest} has no help text"
        for opt in action.option_strings:
            assert opt in out, f"{name} --help does not list {opt}"
        if action.default not in (None, False, [], "==SUPPRESS==") and action.option_strings:
            assert f"(default: {action.default})" in " ".join(out.split()), f"{name}: {action.dest} default"


def test_top_level_help_and_no_command(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXPECTED)
    assert main([]) == 2


# -- usage errors: exit 2, the message names the argument -------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["refine", "{photo}", "p.npy"], "--out"),                                  # required option missing
    (["refine", "{photo}", "p.npy", "--out", "o.npy", "--refine-opt", "novalue"], "--refine-opt"),
    (["refine", "{photo}", "p.npy", "--out", "o.npy", "--refine", "magic"], "magic"),
    (["refine", "{photo}", "missing.npy", "--out", "o.npy"], "missing.npy"),   # missing input file
    (["refine", "{photo}-nope", "p.npy", "--out", "o.npy"], "-nope"),
    (["scribble2mask", "{photo}", "s.png", "--out", "m.png", "--point-radius", "-3"], "--point-radius"),
    (["box2mask", "{photo}", "--boxes", "1,2,3", "--out", "m.png"], "--boxes"),
    (["box2mask", "{photo}", "--boxes", "1,2,3,4", "--out", "m.png", "--rounds", "0"], "--rounds"),
    (["box2mask", "{photo}", "--boxes", "1,2,3,4", "--out", "m.png", "--rounds", "two"], "--rounds"),
    (["scribble2mask", "{photo}", "s.png", "--out", "m.png", "--rounds", "-1"], "--rounds"),
    (["segment", "{photo}", "--classes", "a,b", "--out-dir", "o", "--alpha", "3"], "--alpha"),
    (["segment", "{photo}", "--classes", "a,b", "--out-dir", "o", "--dense-mode", "magic"], "--dense-mode"),
    (["evaluate", "--dataset", "voc21", "--pred-dir", ".", "--root", ".", "--workers", "-1"], "--workers"),
    (["evaluate", "--dataset", "nope", "--pred-dir", "."], "nope"),
    (["prompts", "--show", "no-such-set"], "no-such-set"),
    (["demo", "--max-side", "8"], "--max-side"),
    (["bench", "no-such-bench"], "benchmark"),
    (["segment", "{photo}", "--classes", "a", "--out-dir", "o", "--no-such-flag"], "--no-such-flag"),
])
def test_bad_arguments_exit_2_naming_the_argument(argv, needle, photo, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{photo}", str(photo)) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err.strip().splitlines()[-1], err
    assert "Traceback" not in err


# -- runtime failures: exit 1, one line; --debug shows the exception --------------------------------
def test_runtime_failure_is_one_line_and_debug_raises(tmp_path, photo, capsys):
    probs = tmp_path / "p.npy"
    np.save(probs, np.full((2, 24, 32), 0.5, np.float32))
    (tmp_path / "afile").write_text("x")
    argv = ["refine", str(photo), str(probs), "--out", str(tmp_path / "afile" / "o.npy")]  # cannot be written
    assert main(argv) == 1
    _one_line_error(capsys.readouterr().err, "clipapro refine: error:", "afile")
    with pytest.raises(OSError, match="afile"):
        main(["--debug", *argv])
    with pytest.raises(OSError, match="afile"):
        main([argv[0], "--debug", *argv[1:]])


def test_missing_and_corrupt_inputs_exit_2_in_one_line(tmp_path, photo, capsys):
    probs = tmp_path / "p.npy"
    np.save(probs, np.full((2, 24, 32), 0.5, np.float32))
    argv = ["refine", str(tmp_path / "missing.png"), str(probs), "--out", str(tmp_path / "o.npy")]
    assert main(argv) == 2
    _one_line_error(capsys.readouterr().err, "clipapro refine: error:", "missing.png")
    with pytest.raises(_common.UsageError, match="missing.png"):
        main(["--debug", *argv])
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    assert main(["box2mask", str(corrupt), "--boxes", "1,1,5,5", "--out", str(tmp_path / "m.png")]) == 2
    _one_line_error(capsys.readouterr().err, "corrupt.png")
    np.save(probs, np.full((2, 5, 5), 0.5, np.float32))  # H x W of another image
    assert main(["refine", str(photo), str(probs), "--out", str(tmp_path / "o.npy")]) == 2
    _one_line_error(capsys.readouterr().err, "p.npy")
    assert not (tmp_path / "o.npy").exists()


def test_deprecated_spellings_still_work_and_warn(tmp_path, photo, capsys):
    rng = np.random.default_rng(0)
    p = rng.random((3, 24, 32)).astype(np.float32)
    np.save(tmp_path / "p.npy", p / p.sum(0))
    new = ["refine", str(photo), str(tmp_path / "p.npy"), "--out", str(tmp_path / "a.npy"), "--refine", "pamr",
           "--refine-opt", "steps=2"]
    old = ["refine", str(photo), str(tmp_path / "p.npy"), "--out", str(tmp_path / "b.npy"), "--method", "pamr",
           "--option", "steps=2"]
    assert main(new) == 0 and main(old) == 0
    err = capsys.readouterr().err
    assert "--method is deprecated" in err and "use --refine" in err and "--option is deprecated" in err
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))
    assert build_parser().parse_args(["pseudo-label", "--dataset", "d", "--out-dir", "o", "--text-cache", "c"]
                                     ).cache_dir == "c"
    assert build_parser().parse_args(["train", "--dataset", "d", "--out", "o"]).out_dir == "o"
    assert build_parser().parse_args(["segment", "x.png", "--classes", "a,b", "--out-dir", "o",
                                      "--no-refine"]).refine == "none"


def test_outputs_never_overwrite_inputs_or_each_other(tmp_path, photo, capsys):
    a, b = tmp_path / "photo.png", tmp_path / "photo.jpg"
    a.write_bytes(photo.read_bytes())
    b.write_bytes(photo.read_bytes())
    base = ["--classes", "a,b", "--model", "ViT-B-16", "--random-init", "--refine", "none"]
    assert main(["segment", str(a), "--out-dir", str(tmp_path), *base]) == 2  # photo.png -> photo.png
    assert "would overwrite the input" in capsys.readouterr().err
    assert main(["segment", str(a), str(b), "--out-dir", str(tmp_path / "o"), *base]) == 2  # same stem
    assert "same file" in capsys.readouterr().err
    assert a.read_bytes() == photo.read_bytes() and not (tmp_path / "o").exists()
    probs = tmp_path / "p.npy"
    np.save(probs, np.full((2, 24, 32), 0.5, np.float32))
    assert main(["refine", str(photo), str(probs), "--out", str(probs)]) == 2
    assert "would overwrite the input" in capsys.readouterr().err


def test_out_refuses_symlinks_and_devices(tmp_path, photo, capsys):
    probs = tmp_path / "p.npy"
    np.save(probs, np.full((2, 24, 32), 0.5, np.float32))
    target = tmp_path / "precious.npy"
    target.write_bytes(b"keep me")
    link = tmp_path / "link.npy"
    link.symlink_to(target)
    assert main(["refine", str(photo), str(probs), "--out", str(link)]) == 2  # refused before any work
    assert "symbolic link" in capsys.readouterr().err
    assert link.is_symlink() and target.read_bytes() == b"keep me"
    assert main(["refine", str(photo), str(probs), "--out", "/dev/null"]) == 2
    assert "not a regular file" in capsys.readouterr().err
    from clipapro.io import write_bytes_atomic

    with pytest.raises(ValueError, match="symbolic link"):  # the library refuses too, not only the CLI
        write_bytes_atomic(link, b"x")
    assert target.read_bytes() == b"keep me"


def test_negative_box_coordinates_need_no_equals_sign(tmp_path, photo, capsys):
    out = tmp_path / "m.png"
    assert main(["box2mask", str(photo), "--boxes", "-5,2,10,12", "--out", str(out)]) == 2
    assert "outside" in capsys.readouterr().err  # parsed as a box (then refused), not as an unknown option


def test_real_process_exit_codes(tmp_path):
    """``python -m clipapro`` as a user runs it: exit codes and stderr of a separate process."""
    run = [sys.executable, "-m", "clipapro", "refine", str(tmp_path / "nope.png"), str(tmp_path / "p.npy"),
           "--out", str(tmp_path / "o.npy")]
    done = subprocess.run(run, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2  # a missing input is a bad argument
    _one_line_error(done.stderr, "nope.png")
    done = subprocess.run(run[:5], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and "--out" in done.stderr


# -- end to end on tiny inputs ----------------------------------------------------------------------
def test_refine_end_to_end(photo, tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 24, 32)).astype(np.float32)
    logits[1, 6:18, 8:24] += 2.0
    np.save(tmp_path / "logits.npy", logits)
    argv = ["refine", str(photo), str(tmp_path / "logits.npy"), "--logits", "--out", str(tmp_path / "r.npy"),
            "--labels-out", str(tmp_path / "r.png"), "--method", "apro"]
    assert main(argv) == 0
    refined = np.load(tmp_path / "r.npy")
    assert refined.shape == (3, 24, 32) and refined.dtype == np.float32
    np.testing.assert_allclose(refined.sum(0), 1, atol=1e-4)
    assert np.array_equal(np.array(Image.open(tmp_path / "r.png")), refined.argmax(0))


def test_box2mask_and_scribble2mask_end_to_end(photo, tmp_path, capsys):
    assert main(["box2mask", str(photo), "--boxes", "6,4,26,20", "--out", str(tmp_path / "b.png"),
                 "--probs-out", str(tmp_path / "b.npy")]) == 0
    inst = np.array(Image.open(tmp_path / "b.png"))
    assert inst.shape == (24, 32) and inst[12, 16] == 1 and inst[1, 1] == 0
    assert np.load(tmp_path / "b.npy").shape == (1, 24, 32)
    scribbles = np.full((24, 32), 255)
    scribbles[12, 10:22] = 15
    scribbles[1, :] = 0
    save_label_png(tmp_path / "s.png", scribbles)
    assert main(["scribble2mask", str(photo), str(tmp_path / "s.png"), "--out", str(tmp_path / "m.png")]) == 0
    mask = np.array(Image.open(tmp_path / "m.png"))
    assert set(np.unique(mask)) == {0, 15} and mask[12, 16] == 15 and mask[22, 2] == 0
    assert "m.png" in capsys.readouterr().out


def test_evaluate_end_to_end_and_iou_figure(tmp_path, capsys):
    from clipapro.viz import save_iou_bars

    rng = np.random.default_rng(1)
    for sid in ("a", "b"):
        (tmp_path / "ds" / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)).save(tmp_path / "ds" / "images" / f"{sid}.png")
        gt = rng.integers(0, 3, (6, 9))
        save_label_png(tmp_path / "ds" / "masks" / f"{sid}.png", gt)
        save_label_png(tmp_path / "pred" / f"{sid}.png", gt if sid == "a" else (gt + 1) % 3)
    out = tmp_path / "m.json"
    assert main(["evaluate", "--dataset", "folder", "--root", str(tmp_path / "ds"), "--classes", "x,y,z",
                 "--pred-dir", str(tmp_path / "pred"), "--out", str(out), "--workers", "0", "--quiet"]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["aAcc"] == 50.0 and set(metrics["IoU"]) == {"x", "y", "z"}
    assert "mIoU" in capsys.readouterr().out
    with Image.open(save_iou_bars(tmp_path / "iou.png", out, width=320, height=200)) as im:
        assert im.size == (320, 200)


def test_prompts_end_to_end(capsys):
    assert main(["prompts"]) == 0
    assert "voc21" in capsys.readouterr().out
    assert main(["prompts", "--show", "voc21"]) == 0
    assert "aeroplane" in capsys.readouterr().out


def test_segment_end_to_end_with_tiny_random_model(photo, tmp_path, capsys):
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_VIT))
    out = tmp_path / "seg"
    assert main(["segment", str(photo), "--classes", "cat,dog,grass", "--model", str(cfg), "--random-init",
                 "--templates", "single", "--out-dir", str(out)]) == 0
    labels = np.array(Image.open(out / "photo.png"))
    assert labels.shape == (24, 32) and labels.max() < 3
    assert Image.open(out / "photo_overlay.png").size == (32, 24)
    assert "photo.png:" in capsys.readouterr().out


def test_bench_passes_arguments_and_exit_code(tmp_path, capfd):
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "bench_eval.py").write_text(
        "import sys, json\nprint(json.dumps(sys.argv[1:]))\nsys.exit(3 if '--fail' in sys.argv else 0)\n")
    assert main(["bench", "--scripts-dir", str(scripts), "eval", "--images", "2", "--json", "x.json"]) == 0
    assert json.loads(capfd.readouterr().out.strip()) == ["--images", "2", "--json", "x.json"]
    assert main(["bench", "--scripts-dir", str(scripts), "eval", "--fail"]) == 3
    capfd.readouterr()
    assert main(["bench", "--scripts-dir", str(scripts), "dense"]) == 2
    _one_line_error(capfd.readouterr().err, "bench_dense.py")


def test_bench_knows_the_repository_scripts():
    from clipapro.commands.bench import BENCHMARKS, scripts_dir

    for script, _ in BENCHMARKS.values():
        assert (scripts_dir() / script).is_file(), script


# -- shared helpers ---------------------------------------------------------------------------------
def test_read_image_and_figure_helpers(photo, tmp_path, capsys):
    img = _common.read_input_image(photo)
    assert img.dtype == np.uint8 and img.shape == (24, 32, 3)
    with pytest.raises(_common.UsageError, match="image file not found: .*nope.png"):
        _common.read_input_image(tmp_path / "nope.png")
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(photo.read_bytes()[:60])
    with pytest.raises(_common.UsageError, match="cannot read image .*trunc.png"):
        _common.read_input_image(truncated)
    assert _common.write_label_figure(None, img, np.zeros((24, 32), np.int64)) is None
    out = _common.write_label_figure(tmp_path / "f.png", img, np.zeros((24, 32), np.int64), ["background"])
    assert out.is_file() and f"figure: {out}" in capsys.readouterr().out
    parser = build_parser()
    _common.add_figure_argument(parser, many=True)
    assert parser.parse_args(["--figure", "x.png"]).figure == "x.png"
    assert _common.figure_path(None, "a/b.jpg", 1) is None
    assert _common.figure_path("f.png", "a/b.jpg", 1) == Path("f.png")
    assert _common.figure_path("figs", "a/b.jpg", 3) == Path("figs/b.png")


# -- --figure on every command that writes labels (skipped until a command has the option) -----------
def _figure_case(name, photo, tmp_path):
    """argv writing labels for ``photo`` with --figure, and the (image, labels) the figure shows."""
    fig = str(tmp_path / "fig.png")
    if name == "refine":
        np.save(tmp_path / "p.npy", np.full((2, 24, 32), 0.5, np.float32))
        return ["refine", str(photo), str(tmp_path / "p.npy"), "--out", str(tmp_path / "o.npy"), "--figure", fig]
    if name == "box2mask":
        return ["box2mask", str(photo), "--boxes", "6,4,26,20", "--out", str(tmp_path / "b.png"), "--figure", fig]
    if name == "scribble2mask":
        s = np.full((24, 32), 255)
        s[12, 10:22], s[1, :] = 15, 0
        save_label_png(tmp_path / "s.png", s)
        return ["scribble2mask", str(photo), str(tmp_path / "s.png"), "--out", str(tmp_path / "m.png"), "--figure", fig]
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps(TINY_VIT))
    return ["segment", str(photo), "--classes", "cat,dog", "--model", str(cfg), "--random-init", "--templates",
            "single", "--out-dir", str(tmp_path / "seg"), "--figure", fig]


@pytest.mark.parametrize("name", ["refine", "box2mask", "scribble2mask", "segment"])
def test_label_commands_write_a_figure(name, photo, tmp_path, capsys):
    from clipapro.viz import overlay_figure_size

    if not any("--figure" in a.option_strings for a in _subparsers()[name]._actions):
        pytest.skip(f"{name} has no --figure yet")
    assert main(_figure_case(name, photo, tmp_path)) == 0
    assert "figure: " in capsys.readouterr().out
    with Image.open(tmp_path / "fig.png") as im:
        assert im.format == "PNG" and im.size[0] == 640
        assert im.size in {overlay_figure_size((24, 32), n) for n in range(1, 4)}


def test_evaluate_writes_an_iou_chart(tmp_path):
    if not any("--figure" in a.option_strings for a in _subparsers()["evaluate"]._actions):
        pytest.skip("evaluate has no --figure yet")
    for sid in ("a", "b"):
        (tmp_path / "ds" / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((6, 9, 3), np.uint8)).save(tmp_path / "ds" / "images" / f"{sid}.png")
        save_label_png(tmp_path / "ds" / "masks" / f"{sid}.png", np.arange(54).reshape(6, 9) % 3)
        save_label_png(tmp_path / "pred" / f"{sid}.png", np.zeros((6, 9), np.int64))
    assert main(["evaluate", "--dataset", "folder", "--root", str(tmp_path / "ds"), "--classes", "x,y,z",
                 "--pred-dir", str(tmp_path / "pred"), "--workers", "0", "--quiet",
                 "--figure", str(tmp_path / "iou.png")]) == 0
    with Image.open(tmp_path / "iou.png") as im:
        assert im.size == (800, 480)
