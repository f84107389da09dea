"""The whole search step captured in one CUDA graph (`--cuda_graph`) and replayed.

At batch 64 the NAS-Bench-201 supernet is thousands of tiny kernels per step, so the GPU
waits on Python launching them. A CUDA graph records the step's kernels once and launches
them all with one call. The step is already free of host-device synchronisation and its
shapes are fixed, which is what capture needs; the rest is here:

- static inputs: every batch is copied into the buffers the graph reads;
- what a graph bakes in is a key: the learning rate and the Gumbel temperature (they change
  per epoch: a new capture), whether alpha is updated, and the network's structure (a new
  stage: `reset()`, then warm-up steps again, as new shapes need cuDNN's autotuning);
- warm-up: the first steps of a structure run eagerly on a side stream (cuDNN and cuBLAS set
  up, optimizer state created), as PyTorch's CUDA-graph notes ask;
- a batch of another shape (the last, partial batch of an epoch) runs eagerly.

Every step, warm-up included, is a real step on a real batch: the graph changes how the
kernels are launched, not what they compute. Random draws (Dirichlet, Gumbel) come from the
same Philox stream positions as eager steps. The architecture's Adam must be built with
`capturable=True` (common/nas/architect.py). GDAS (one host read per forward), `--unrolled`
(random-state replay on the host), `--amp` and torchrun are refused with the flag.
"""
import torch


class StepGraph:
    """A step `fn(*tensors) -> tuple of tensors`, replayed from a CUDA graph once warm (see
    the module doc).

    Call it as `graph(key, tensors, fn)`: `key` holds every Python value `fn` bakes into the
    kernels; a new key captures again. The outputs of a replay are the graph's own buffers,
    overwritten by the next replay: consume them (on the same stream) before then."""

    def __init__(self, warmup_steps=3):
        self.warmup_steps = warmup_steps
        self.captures = 0  # how many graphs were captured (for tests and the log)
        self.reset()

    def reset(self):
        """Forget the graph and the warm-up (the network's modules or shapes changed)."""
        self.graph, self.key, self.layout, self.batch = None, None, None, None
        self.static_inputs, self.static_outputs = None, None
        self.warm_steps = 0

    def __call__(self, key, tensors, fn):
        layout = tuple((t.dtype, tuple(t.shape[1:])) for t in tensors)
        batch = tensors[0].shape[0]
        if layout != self.layout or (self.batch is not None and batch > self.batch):
            self.reset()  # other inputs (alpha updates start) or a first batch that was partial
            self.layout, self.batch = layout, batch
        if batch != self.batch:
            return fn(*tensors)  # a partial batch: eager
        if self.graph is not None and key == self.key:
            return self._replay(tensors)
        if self.warm_steps < self.warmup_steps:
            self.warm_steps += 1
            return self._on_side_stream(tensors, fn)
        self._capture(key, tensors, fn)
        return self._replay(tensors)

    @staticmethod
    def _on_side_stream(tensors, fn):
        """One eager step on a side stream, ordered both ways with the current stream."""
        current, side = torch.cuda.current_stream(), torch.cuda.Stream()
        side.wait_stream(current)
        with torch.cuda.stream(side):
            outputs = fn(*tensors)
        current.wait_stream(side)
        for out in outputs:
            out.record_stream(current)  # read on the current stream after the side one freed it
        return outputs

    def _capture(self, key, tensors, fn):
        self.graph, self.static_inputs, self.static_outputs = None, None, None  # the old graph's memory back first
        self.static_inputs = [t.clone() for t in tensors]
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):  # loader threads may use CUDA
            self.static_outputs = tuple(fn(*self.static_inputs))
        self.graph, self.key, self.captures = graph, key, self.captures + 1
        torch.cuda.empty_cache()  # the warm-up's cached activations: the graph has its own pool

    def _replay(self, tensors):
        for static, tensor in zip(self.static_inputs, tensors):
            static.copy_(tensor, non_blocking=True)
        self.graph.replay()
        return self.static_outputs


def graph_refusal(args, distributed):
    """Why `--cuda_graph` cannot run with these flags, or None (see the module doc)."""
    if args.method == "gdas":
        return "GDAS reads its sampled ops on the host every forward"
    if args.unrolled:
        return "--unrolled replays random states on the host"
    if args.amp:
        return "--amp's autocast caches casts across the capture"
    if distributed:
        return "under torchrun DistributedDataParallel's communication is not captured"
    return None


def graph_key(model, weight_optimizer, update_arch):
    """The Python values a captured step bakes in: the learning rate, the Gumbel temperatures,
    whether alpha is updated (common/nas/cuda_graph.py)."""
    taus = tuple(arch.tau for arch in model.arch_distributions().values())
    return weight_optimizer.param_groups[0]["lr"], taus, update_arch
