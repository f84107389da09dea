"""What a run shows in TensorBoard beside its per-epoch scalars (common/run/driver.py writes those).

    step/train_loss, step/train_acc      every --report_freq steps: the running means the progress
                                         line reads (no extra host read), x = steps since the start
    alpha/<cell>, beta/<cell>            histograms of the architecture parameters and (DrNAS) the
                                         Dirichlet concentrations of every cell type's kept ops,
                                         every epoch
    mean <cell> <edge>/<op>              the mean mixing weight of every op (the Dirichlet mean for
                                         DrNAS), one card group per edge; the custom-scalars tab
                                         draws each edge's ops in one chart
    exploration/<metric>/{min,mean,max}  the accuracy band of the sampled architectures
                                         (--sample_archs with a benchmark), a band chart in the
                                         custom-scalars tab
    genotype                             the genotype as text (the form --arch takes), every epoch
    hparams                              the run's flags with its final figures (final/...), once
                                         the run has finished

Every function takes the run's SummaryWriter (`RunFolder.tb`); common/run/driver.py calls them on
rank 0 only.
"""
import re

import numpy as np

MEAN_TAG = "mean {cell} {edge}/{op}"


def mean_tag(cell, edge, op):
    return MEAN_TAG.format(cell=cell, edge=edge, op=op)


def step_curve(tb, epoch, steps_per_epoch):
    """The progress line's callback: the running train loss and accuracy of the epoch at its
    `done`-th step, at x = epoch * steps_per_epoch + done."""
    def report(done, loss, acc):
        step = epoch * steps_per_epoch + done
        tb.add_scalar("step/train_loss", loss, step)
        tb.add_scalar("step/train_acc", acc, step)

    return report


def layout(edge_labels, metrics=()):
    """The custom-scalars layout: one chart per edge of every cell type holding all its ops,
    and one band chart per exploration metric."""
    charts = {}
    for cell, labels in edge_labels.items():
        charts[f"mean mixing weight per edge ({cell})"] = {
            label: ["Multiline", [re.escape(mean_tag(cell, label, "")) + ".*"]] for label in labels}
    if metrics:
        charts["exploration (sampled architectures)"] = {
            metric: ["Margin", [f"exploration/{metric}/{end}" for end in ("mean", "min", "max")]]
            for metric in metrics}
    return charts


def arch_epoch(tb, record, results, first=False):
    """An epoch of a search: alpha and beta histograms, the mean weight of every op on every
    edge, the exploration band and the genotype's text (`results` gives the edge labels, op
    names and genotype text); `first`: this process's first epoch, which writes the layout."""
    epoch, op_names = record["epoch"], results.get("op_names") or []
    edge_labels = results.get("edge_labels") or {}
    band = (record.get("exploration") or {}).get("benchmark") or {}
    if first:
        tb.add_custom_scalars(layout(edge_labels, sorted(band)))
    for cell, summary in (record.get("arch") or {}).items():
        kept = np.asarray(summary["mean"], dtype=np.float64) > 0  # pruned ops weigh 0: left out
        for name in ("alpha", "beta"):
            if summary.get(name) is not None:
                values = np.asarray(summary[name], dtype=np.float64)[kept]
                tb.add_histogram(f"{name}/{cell}", values[np.isfinite(values)], epoch)
        labels = edge_labels.get(cell) or [str(e) for e in range(len(summary["mean"]))]
        for label, row in zip(labels, summary["mean"]):
            for op, value in zip(op_names, row):
                tb.add_scalar(mean_tag(cell, label, op), value, epoch)
    for metric, ends in band.items():
        for end, value in ends.items():
            tb.add_scalar(f"exploration/{metric}/{end}", value, epoch)
    text = results.get("genotype_text") or results.get("genotype")
    if text:
        tb.add_text("genotype", text if isinstance(text, str) else str(text), epoch)


def _hparam_value(value):
    """A flag's value as the hparams plugin takes it (numbers, strings, booleans)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return "none" if value is None else " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def final_metrics(results):
    """The run's final figures, by tag: the last epoch's validation or test figures and the
    final benchmark accuracies."""
    last = results["epochs"][-1] if results.get("epochs") else {}
    metrics = {f"final/{key}": last[key] for key in ("valid_acc", "valid_loss", "test_acc", "test_top5", "train_acc")
               if isinstance(last.get(key), (int, float))}
    for name, value in (results.get("benchmark") or {}).items():
        if isinstance(value, (int, float)):
            metrics[f"final/benchmark_{name}"] = value
    return metrics


def write_hparams(tb, args, results):
    """The run's flags beside its final figures, for the hparams tab (one entry per run)."""
    from torch.utils.tensorboard.summary import hparams

    metrics = final_metrics(results)
    flags = {name: _hparam_value(value) for name, value in sorted(args.items())}
    for summary in hparams(flags, metrics):
        tb.file_writer.add_summary(summary)
    step = len(results.get("epochs") or ())
    for tag, value in metrics.items():
        tb.add_scalar(tag, value, step)
