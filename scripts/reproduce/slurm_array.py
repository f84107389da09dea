"""A table on a SLURM cluster: plain `sbatch --array` scripts, one per wave of runs and size of
job, and a `submit.sh` that submits them, each after the arrays whose runs it reads have succeeded.

A wave is the runs whose inputs are all in earlier waves (the searches and the trainings of
published genotypes, then the trainings of what the searches found), split by the GPUs a run
takes (a job array asks for one size of job). Every
array task is `run_table.py TABLE ... --task INDEX` under `srun`: it skips a run that is done,
continues one that has a checkpoint, and exits with status 3 when the time limit's early signal
(`--signal=USR1@120`) stopped it with its checkpoint, on which the task requeues itself.
SLURM itself is the scheduler; nothing here decides what runs where.
"""
import shlex
from pathlib import Path

from table_schedule import REQUEUE


def waves(table):
    """[(wave, GPUs per run, [run indices], [indices of the arrays it waits for])], in submission
    order: an array waits for the arrays that hold its runs' inputs, no others."""
    level = {}
    for run in table.runs:
        level[run.name] = 1 + max((level[name] for name in run.after), default=-1)
    keys = sorted({(level[run.name], run.gpus) for run in table.runs})
    array_of = {run.name: keys.index((level[run.name], run.gpus)) for run in table.runs}
    out = []
    for position, (wave, gpus) in enumerate(keys):
        indices = [i for i, run in enumerate(table.runs) if array_of[run.name] == position]
        needs = sorted({array_of[name] for i in indices for name in table.runs[i].after})
        out.append((wave, gpus, indices, needs))
    return out


def array_script(table, wave, gpus, indices, *, repo, task_command, log_dir, time_limit, partition, cpus,
                 max_parallel, gpu_kind):
    """The text of one sbatch script: a job array over `indices`, each task `task_command` + its index."""
    array = ",".join(str(i) for i in indices) + (f"%{max_parallel}" if max_parallel else "")
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name=drnas-{table.name}-w{wave}",
             f"#SBATCH --array={array}",
             f"#SBATCH --gres={gpu_kind}:{gpus}" if gpu_kind else None,
             "#SBATCH --ntasks=1",
             f"#SBATCH --cpus-per-task={cpus * gpus}",
             f"#SBATCH --time={time_limit}",
             f"#SBATCH --partition={partition}" if partition else None,
             "#SBATCH --signal=USR1@120          # two minutes before the limit: stop at a step, checkpoint",
             "#SBATCH --requeue",
             "#SBATCH --open-mode=append",
             f"#SBATCH --output={log_dir}/%x-%A_%a.out",
             "",
             f"cd {shlex.quote(str(repo))}",
             f"srun {task_command} --task \"$SLURM_ARRAY_TASK_ID\"",
             "status=$?",
             f"if [ \"$status\" -eq {REQUEUE} ]; then   # stopped with its checkpoint: continue in a new job",
             "  scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"",
             "  exit 0",
             "fi",
             "exit \"$status\"",
             ""]
    return "\n".join(line for line in lines if line is not None)


def submit_script(arrays):
    """submit.sh: each array submitted after the arrays it waits for have succeeded (afterok);
    `arrays`: [(file, [positions of the arrays it waits for])]."""
    lines = ["#!/bin/bash", "# Submits the table's job arrays; each waits for the arrays whose runs it reads.",
             "set -euo pipefail", 'cd "$(dirname "$0")"']
    for position, (file, needs) in enumerate(arrays):
        after = (" --dependency=afterok:" + ":".join(f"${{job{n}}}" for n in needs)) if needs else ""
        lines += [f"job{position}=$(sbatch --parsable{after} {shlex.quote(Path(file).name)})",
                  f"job{position}=${{job{position}%%;*}}",  # --parsable prints JOBID[;CLUSTER]
                  f"echo \"submitted {Path(file).name}: job ${{job{position}}}\""]
    return "\n".join(lines) + "\n"


def write_slurm(table, out_dir, *, repo, task_command, table_dir, time_limit="48:00:00", partition=None, cpus=8,
                max_parallel=None, gpu_kind="gpu"):
    """Write the sbatch scripts and submit.sh into `out_dir`; returns their paths (submit.sh last).
    `cpus`: CPUs per GPU of a run."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_dir = Path(table_dir) / ".runner"
    log_dir.mkdir(parents=True, exist_ok=True)  # SLURM does not make the folder of --output
    written = []
    for wave, gpus, indices, needs in waves(table):
        path = out_dir / f"{table.name}-wave{wave}-{gpus}gpu.sbatch"
        path.write_text(array_script(table, wave, gpus, indices, repo=repo, task_command=task_command,
                                     log_dir=log_dir, time_limit=time_limit, partition=partition, cpus=cpus,
                                     max_parallel=max_parallel, gpu_kind=gpu_kind))
        written.append((path, needs))
    submit = out_dir / "submit.sh"
    submit.write_text(submit_script(written))
    submit.chmod(0o755)
    return [path for path, _ in written] + [submit]
