"""Running sums of a loop's loss and accuracy, kept on the device: no host-device
synchronisation inside a step; the sums are read (one host read) only when a line is printed
or an epoch ends. The first non-finite step is remembered, for the divergence check."""
import torch


class Meter:
    """Sums of loss and correct predictions on the device, plus the first non-finite step."""

    def __init__(self, device):
        self.loss_sum = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.first_bad = torch.full((), -1, device=device, dtype=torch.long)
        self.count = 0

    def add(self, step, loss, logits, target, healthy=None):
        """One step's numbers; `healthy` (a device bool, default: the loss is finite) false marks
        the step as the first non-finite one unless an earlier step was."""
        loss = loss.detach()
        self.loss_sum += loss * target.shape[0]
        self.correct += (logits.detach().argmax(1) == target).sum()
        self.count += target.shape[0]
        bad = ~torch.isfinite(loss) if healthy is None else ~(healthy & torch.isfinite(loss))
        self.first_bad = torch.where((self.first_bad < 0) & bad, step, self.first_bad)

    def state_dict(self):
        """The sums, for a checkpoint written in the middle of an epoch."""
        return {"loss_sum": self.loss_sum.detach().cpu(), "correct": self.correct.cpu(),
                "first_bad": self.first_bad.cpu(), "count": self.count}

    def load_state_dict(self, state):
        device = self.loss_sum.device
        self.loss_sum = state["loss_sum"].to(device)
        self.correct = state["correct"].to(device)
        self.first_bad = state["first_bad"].to(device)
        self.count = int(state["count"])

    def read(self):
        """(mean loss, accuracy in %, first non-finite step or -1): one host read."""
        loss_sum, correct, first_bad = torch.stack(
            [self.loss_sum, self.correct.to(self.loss_sum.dtype), self.first_bad.to(self.loss_sum.dtype)]
        ).tolist()
        count = max(self.count, 1)
        return loss_sum / count, 100.0 * correct / count, int(first_bad)

    def read_global(self, dist, extra=None):
        """`read` with the sums all-reduced over the ranks of `dist` (a plain read in one process).

        Returns (mean loss, accuracy %, first non-finite step or -1, global count, `extra`
        (a device scalar) summed, or None)."""
        if not dist.distributed:
            loss, acc, first_bad = self.read()
            return loss, acc, first_bad, self.count, (None if extra is None else extra.item())
        dtype, device = torch.float64, self.loss_sum.device
        bad = self.first_bad.to(dtype)
        sums = torch.stack([self.loss_sum.to(dtype), self.correct.to(dtype),
                            torch.tensor(float(self.count), dtype=dtype, device=device),
                            (bad >= 0).to(dtype), bad.clamp(min=0),
                            torch.zeros((), dtype=dtype, device=device) if extra is None else extra.to(dtype)])
        dist.all_reduce_sum(sums)
        loss_sum, correct, count, n_bad, bad_sum, extra_sum = sums.tolist()
        count = int(count)
        first_bad = int(bad_sum / n_bad) if n_bad else -1  # the mean step over the ranks that saw one
        return (loss_sum / max(count, 1), 100.0 * correct / max(count, 1), first_bad, count,
                None if extra is None else extra_sum)
