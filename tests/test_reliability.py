"""Every bad input and fault of scripts/qa/probe_bad_inputs.py is held (one line, exit 2, nothing
left behind, no code run from a file); run folders belong to one run; resume alone, extend;
temporary files of killed writes are removed; the thread count is checked."""
import subprocess
import sys

import pytest
import torch

from script_checks import ROOT, load_script, results
from space201 import train_search

probe = load_script("probe_bad_inputs")
TINY = ["--dataset", "synthetic", "--data_limit", "128", "--batch_size", "32", "--init_channels", "4",
        "--num_cells", "1", "--device", "cpu", "--report_freq", "1"]


@pytest.mark.parametrize("case", probe.CASES, ids=[case.name for case in probe.CASES])
def test_the_probe_case_is_held(case):
    held, what = probe.run_case(case)
    assert held, what


def test_the_probe_counts_every_case(capsys, monkeypatch):
    """The summary line counts every case (each case runs once, above)."""
    outcomes = iter([(True, "held")] * (len(probe.CASES) - 1) + [(False, "a failure")])
    monkeypatch.setattr(probe, "run_case", lambda case: next(outcomes))
    assert probe.main() is False
    assert capsys.readouterr().out.strip().endswith(f"{len(probe.CASES)} tried, {len(probe.CASES) - 1} held")
    assert len(probe.CASES) >= 77


def test_a_requeued_job_starts_anew_where_its_first_start_was_killed(tmp_path):
    """A folder that a start killed before its first checkpoint left (log.txt, results without an
    epoch) holds nothing to lose: the README's SLURM recipe starts anew there; a folder with an
    epoch done is still refused."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.txt").write_text("12/04 03:00:00 PM args {...}\n")
    (out / "results.json").write_text('{"args": {}, "epochs": [], "finished": false}')
    train_search.main([*TINY, "--epochs", "1", "--output_dir", str(out)])
    assert results(out)["finished"] is True
    done = subprocess.run([sys.executable, "201-space/train_search.py", *TINY, "--epochs", "1", "--output_dir",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "already holds a run" in done.stderr


def test_a_closed_stdout_ends_the_terminal_output_quietly_and_the_log_goes_on(tmp_path):
    """`... | head -1`: the reader goes away after one line; no logging traceback, and log.txt and
    results.json are complete."""
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "201-space/train_search.py", *TINY, "--epochs", "2", "--output_dir",
                             str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0
    assert "Logging error" not in err and "Traceback" not in err and "BrokenPipe" not in err
    assert results(out)["finished"] is True and "found architecture" in (out / "log.txt").read_text()


def test_a_second_run_into_a_running_folder_is_refused_and_the_first_finishes(tmp_path, monkeypatch):
    from common.nas import search as search_loop

    out, second = tmp_path / "run", []
    command = [sys.executable, "201-space/train_search.py", *TINY, "--epochs", "2", "--output_dir", str(out)]
    real_step = search_loop.search_step

    def step_that_starts_a_second_run(*args, **kwargs):
        if not second:  # in the first step, while this run holds its folder
            second.append(subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120))
        return real_step(*args, **kwargs)

    monkeypatch.setattr(search_loop, "search_step", step_that_starts_a_second_run)
    train_search.main(command[2:])
    assert second[0].returncode == 2 and "another process" in second[0].stderr
    assert "Traceback" not in second[0].stderr
    record = results(out)
    assert record["finished"] and [e["epoch"] for e in record["epochs"]] == [1, 2]
    assert (out / "log.txt").read_text().count("args {") == 1  # one run wrote there


def test_overwrite_starts_anew_in_a_folder_that_holds_a_run(tmp_path):
    out = tmp_path / "run"
    train_search.main([*TINY, "--epochs", "2", "--output_dir", str(out)])
    train_search.main([*TINY, "--epochs", "1", "--output_dir", str(out), "--overwrite"])
    assert [e["epoch"] for e in results(out)["epochs"]] == [1]
    assert (out / "log.txt").read_text().count("args {") == 1


def test_resume_alone_extends_a_finished_run(tmp_path):
    whole, extended = tmp_path / "whole", tmp_path / "extended"
    train_search.main([*TINY, "--epochs", "4", "--output_dir", str(whole)])
    train_search.main([*TINY, "--epochs", "2", "--output_dir", str(extended)])
    assert results(extended)["finished"]
    train_search.main(["--resume", str(extended), "--epochs", "4"])
    assert "extended: --epochs 2 -> 4; the learning-rate schedule is rebuilt" in (extended / "log.txt").read_text()
    a, b = results(whole), results(extended)
    assert b["finished"] and b["args"]["epochs"] == 4 and len(b["epochs"]) == 4
    # the schedule is rebuilt to the new total from the resumed epoch on: epochs 3-4 follow the
    # 4-epoch cosine, epochs 1-2 kept the 2-epoch one
    assert [e["lr"] for e in b["epochs"][2:]] == pytest.approx([e["lr"] for e in a["epochs"][2:]])
    assert b["epochs"][1]["lr"] == pytest.approx(0.001 + 0.024 * 0.5)  # the middle of a 2-epoch cosine


def test_resume_removes_the_temporary_files_of_killed_writes(tmp_path):
    out = tmp_path / "run"
    train_search.main([*TINY, "--epochs", "2", "--stop_after_epoch", "1", "--output_dir", str(out)])
    orphans = [out / ".checkpoint.pt.abc123.tmp", out / ".results.json.xyz.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half written")
    train_search.main(["--resume", str(out)])
    assert not any(orphan.exists() for orphan in orphans)


def test_a_resume_on_another_thread_count_says_it(tmp_path, capsys):
    out = tmp_path / "run"
    train_search.main([*TINY, "--epochs", "2", "--stop_after_epoch", "1", "--output_dir", str(out)])
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        train_search.main(["--resume", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert "not bit-identical" in capsys.readouterr().out


def test_a_crafted_checkpoint_does_not_run_code(tmp_path):
    marker = tmp_path / "ran"
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"args": load_script("probe_kit").RunsCode(marker)}, out / "checkpoint.pt")
    with pytest.raises(SystemExit):
        train_search.main(["--resume", str(out)])
    assert not marker.exists()
