"""A live progress line on a terminal, plain log lines every `report_freq` steps otherwise."""
import sys
import time


class Progress:
    """A live progress line on a terminal, plain log lines every `report_freq` steps otherwise.

    Meters live on the device; they are read (a host-device sync) only when a line is
    shown: every `report_freq` steps (where `on_report` takes the numbers for TensorBoard's
    per-step curve), and on a terminal also at most once a second.
    """

    def __init__(self, log, title, total_steps, batch_size, report_freq, steps_after=0, stream=None, first_step=0,
                 on_report=None):
        self.log, self.title = log, title
        self.total, self.batch_size, self.report_freq = total_steps, batch_size, report_freq
        self.steps_after = steps_after  # steps left in the run after this epoch, for the time left
        self.first_step = first_step  # steps of the epoch done before (a resumed epoch)
        self.on_report = on_report  # (steps done, loss, acc) every report_freq steps (TensorBoard's curve)
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.start = self.last_shown = time.time()

    def due(self, step):
        if (step + 1) % self.report_freq == 0:
            return True
        return self.live and (time.time() - self.last_shown >= 1.0 or step + 1 == self.total)

    def show(self, step, loss, acc):
        now = time.time()
        self.last_shown = now
        done = step + 1
        if self.on_report is not None and done % self.report_freq == 0:
            self.on_report(done, loss, acc)
        per_step = (now - self.start) / max(done - self.first_step, 1)
        left = per_step * (self.total - done + self.steps_after)
        line = (f"{self.title} step {done}/{self.total} loss {loss:.4f} acc {acc:.2f}% "
                f"{self.batch_size / per_step:.0f} img/s left {_hms(left)}")
        if self.live:
            end = "\n" if done == self.total else ""
            self.stream.write("\r" + line.ljust(100) + end)
            self.stream.flush()
        else:
            self.log.info(line)


def _hms(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
