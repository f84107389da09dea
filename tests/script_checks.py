"""Checks the end-to-end tests of the scripts share."""
import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def results(out_dir):
    """A run folder's results.json."""
    return json.loads((Path(out_dir) / "results.json").read_text())


def expect_one_line_error(capsys, main, argv):
    """`main(argv)` must exit 2 with one `error: ...` line on stderr and no traceback; returns it."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert "Traceback" not in err
    return err


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script, args, nproc=2, timeout=300):
    """`torchrun --nproc_per_node=nproc ROOT/script args` on the CPU (gloo), with the ranks'
    parameters compared after every step (DRNAS_CHECK_SYNC=1); returns the CompletedProcess."""
    exe = Path(sys.executable).with_name("torchrun")
    launcher = [str(exe)] if exe.exists() else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DRNAS_CHECK_SYNC": "1"}
    cmd = [*launcher, f"--nproc_per_node={nproc}", "--master_addr=127.0.0.1", f"--master_port={free_port()}",
           str(ROOT / script), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def load_script(name):
    """Import scripts/NAME.py or scripts/qa/NAME.py (NAME may be reproduce/run_table) under a module
    name of its own (scripts/ is not a package; its folders are on sys.path: tests/conftest.py)."""
    module_name = "drnas_test_script_" + name.replace("/", "_")
    path = next(path for path in (ROOT / "scripts" / f"{name}.py", ROOT / "scripts" / "qa" / f"{name}.py")
                if path.is_file())
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rank(rank, world_size, port, out_dir, fn, args):
    import torch
    import torch.distributed as torch_dist

    from common.distributed import Dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch_dist.init_process_group("gloo", rank=rank, world_size=world_size)
    dist = Dist(rank, world_size, rank, torch.device("cpu"))
    try:
        result = fn(dist, *args)
    except RuntimeError as err:
        result = {"error": str(err)}
    dist.barrier()
    dist.close()
    torch.save(result, Path(out_dir) / f"rank{rank}.pt")


def spawn_ranks(out_dir, fn, *args, world_size=2):
    """`fn(dist, *args)` in `world_size` processes joined by gloo on the CPU; their results
    (a RuntimeError becomes {"error": message}), rank by rank. `fn` must be a module-level function."""
    import torch
    import torch.multiprocessing as mp

    Path(out_dir).mkdir(parents=True)
    mp.spawn(_rank, args=(world_size, free_port(), str(out_dir), fn, args), nprocs=world_size, join=True)
    return [torch.load(Path(out_dir) / f"rank{r}.pt", weights_only=True) for r in range(world_size)]
