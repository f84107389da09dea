"""The mixing weights of every edge: how alpha becomes a distribution over candidate ops.

DrNAS (paper section 2.1) treats the mixing weights `theta` of an edge as a random
variable, `theta ~ Dirichlet(beta)` with `beta = ELU(alpha) + 1`, and learns `alpha`
through the pathwise (implicit reparameterisation) gradient of `Dirichlet.rsample`.
The same class also gives the baselines the paper compares against on NAS-Bench-201:
DARTS (softmax), SNAS (Gumbel-softmax), GDAS (hard Gumbel, straight-through) and PC-DARTS
(softmax, plus its edge normalisation: one more parameter per edge, softmaxed over the
edges into the same node, which scales the edge's output during search and its strength
at derivation; Xu et al., ICLR 2020, eq. 4).

Pruned operations (progressive learning, paper section 2.3) are handled with a
host-side list of kept operations per edge: the mixing weights are drawn over the kept
operations only and scattered into a zero tensor, so a pruned operation has weight
exactly 0 and the model never has to read a device tensor to know it may skip it.
"""
import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Dirichlet, kl_divergence


def concentration(alpha):
    """Dirichlet concentration `beta = ELU(alpha) + 1`, always > 0 (paper section 2.1)."""
    return F.elu(alpha) + 1


def _dirichlet(alpha, tau):
    # validate_args=False: the argument check would read the tensor on the host (a sync).
    return Dirichlet(concentration(alpha), validate_args=False).rsample()


def _softmax(alpha, tau):
    return F.softmax(alpha, dim=-1)


def _gumbel_softmax(alpha, tau):
    return F.gumbel_softmax(alpha, tau=tau, hard=False, dim=-1)


def _hard_gumbel(alpha, tau):
    # One-hot forward, softmax gradient (straight-through), as in GDAS.
    return F.gumbel_softmax(alpha, tau=tau, hard=True, dim=-1)


def _softmax_mean(alpha):
    return F.softmax(alpha, dim=-1)


def _dirichlet_mean(alpha):
    beta = concentration(alpha)
    return beta / beta.sum(-1, keepdim=True)


@dataclass(frozen=True)
class Method:
    """How one search method turns `alpha` into mixing weights."""

    sample: Callable  # (alpha_kept, tau) -> weights over the kept ops of every edge
    mean: Callable  # alpha_kept -> expected weights, used to derive the architecture
    hard: bool = False  # only the sampled operation is computed (GDAS)
    uses_tau: bool = False  # temperature annealed over the search (SNAS, GDAS)
    edge_normalisation: bool = False  # per-node weights over the incoming edges (PC-DARTS)


METHODS = {
    "dirichlet": Method(_dirichlet, _dirichlet_mean),
    "darts": Method(_softmax, _softmax_mean),
    "snas": Method(_gumbel_softmax, _softmax_mean, uses_tau=True),
    "gdas": Method(_hard_gumbel, _softmax_mean, hard=True, uses_tau=True),
    "pcdarts": Method(_softmax, _softmax_mean, edge_normalisation=True),
}


FIRST_EPOCH_TAU = 10.0  # the authors' networks start at tau 10; their loop sets tau after epoch 0 only


def annealed_tau(epoch, epochs, tau_max=10.0, tau_min=1.0, first_epoch_tau=FIRST_EPOCH_TAU):
    """Gumbel temperature of `epoch` (0-based): the authors' linear steps of
    (tau_max - tau_min) / epochs, so the last epoch runs at tau_min + (tau_max - tau_min) / epochs
    (1.09 for 10 -> 1 over 100 epochs), not at tau_min; epoch 0 runs at `first_epoch_tau`, their
    networks' initial 10 whatever --tau_max (None: tau_max)."""
    if epoch == 0 and first_epoch_tau is not None:
        return first_epoch_tau
    return tau_max - (tau_max - tau_min) * epoch / epochs


DERIVE_RULES = ("softmax", "mean")  # what a DARTS-space genotype ranks ops and edges by


class ArchDistribution(nn.Module):
    """The architecture parameters `alpha` (edges x ops) of one cell type and the distribution
    of its mixing weights (DrNAS: Dirichlet(ELU(alpha) + 1)).

    `kept[e]` lists the operations still alive on edge `e` (all of them until the
    first pruning); it is plain Python data, saved in checkpoints as such.

    `edge_nodes[e]` is the node edge `e` leads into; with PC-DARTS's edge normalisation the
    distribution also holds `edge_beta` (one per edge), softmaxed over the edges of a node.
    """

    def __init__(self, num_edges, num_ops, method="dirichlet", init_scale=1e-3, edge_nodes=None):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
        self.method = method
        self.num_ops = num_ops
        self.alpha = nn.Parameter(init_scale * torch.randn(num_edges, num_ops))
        self.edge_spans = None  # (first, last + 1) edge of every node, edges in node order
        if METHODS[method].edge_normalisation:
            if edge_nodes is None or len(edge_nodes) != num_edges or list(edge_nodes) != sorted(edge_nodes):
                raise ValueError(f"{method} needs the node of each of the {num_edges} edges, in node order")
            nodes = list(edge_nodes)
            self.edge_spans = [(nodes.index(n), len(nodes) - nodes[::-1].index(n)) for n in sorted(set(nodes))]
            self.edge_beta = nn.Parameter(init_scale * torch.randn(num_edges))  # PC-DARTS's 1e-3 * randn
        self.tau = 1.0
        self.expected = False  # within `using_mean()`: sample() returns the expected weights
        self.kept = [list(range(num_ops)) for _ in range(num_edges)]
        self.register_buffer("kept_index", self._index_of(self.kept), persistent=False)

    @property
    def num_edges(self):
        return self.alpha.shape[0]

    @staticmethod
    def _index_of(kept):
        return torch.tensor(kept, dtype=torch.long)

    @property
    def pruned(self):
        return len(self.kept[0]) < self.num_ops

    def _scatter(self, kept_values):
        """Place values over the kept ops into an (edges x ops) tensor, zeros elsewhere."""
        if not self.pruned:
            return kept_values
        full = kept_values.new_zeros(self.alpha.shape)
        return full.scatter(1, self.kept_index, kept_values)

    def kept_alpha(self):
        return self.alpha if not self.pruned else self.alpha.gather(1, self.kept_index)

    def sample(self):
        """One draw of the mixing weights of every edge, in a single batched call (the expected
        weights, with gradient, within `using_mean()`)."""
        method = METHODS[self.method]
        if self.expected:
            return self._scatter(method.mean(self.kept_alpha()))
        return self._scatter(method.sample(self.kept_alpha(), self.tau))

    @contextlib.contextmanager
    def using_mean(self):
        """Within, every forward mixes with the expected weights (Dirichlet mean, softmax): a
        deterministic, twice-differentiable loss, for the sharpness diagnostic."""
        previous, self.expected = self.expected, True
        try:
            yield self
        finally:
            self.expected = previous

    @torch.no_grad()
    def sample_many(self, count):
        """`count` independent draws (count x edges x ops), no gradient: for exploration."""
        alpha = self.kept_alpha().expand(count, *self.kept_alpha().shape)
        draws = METHODS[self.method].sample(alpha, self.tau)
        if not self.pruned:
            return draws
        index = self.kept_index.expand(count, *self.kept_index.shape)
        return draws.new_zeros(count, *self.alpha.shape).scatter(2, index, draws)

    def mean(self):
        """Expected mixing weights (Dirichlet mean beta / sum(beta) for DrNAS), no gradient."""
        with torch.no_grad():
            return self._scatter(METHODS[self.method].mean(self.kept_alpha()))

    def for_derivation(self, rule="softmax"):
        """The weights a genotype is read from, no gradient: `softmax` of alpha over the kept ops
        (pruned ops 0), what the authors' genotype() ranks by for every method; `mean`, the
        method's expected weights (the Dirichlet mean beta / sum(beta) for DrNAS, paper eq. 4).
        Both give every edge the same best op; the ranking across edges differs."""
        if rule not in DERIVE_RULES:
            raise ValueError(f"unknown derivation rule {rule!r}; known: {', '.join(DERIVE_RULES)}")
        with torch.no_grad():
            weights = self.mean() if rule == "mean" else self._scatter(F.softmax(self.kept_alpha(), dim=-1))
            edges = self.edge_weights()  # PC-DARTS: an edge's strength is its ops' times its own
            return weights if edges is None else weights * edges[:, None]

    def edge_weights(self):
        """PC-DARTS's edge normalisation: softmax of `edge_beta` over the edges into each node
        (a vector over the edges, with gradient), or None for the other methods."""
        if self.edge_spans is None:
            return None
        return torch.cat([F.softmax(self.edge_beta[first:end], -1) for first, end in self.edge_spans])

    def hard_choices(self, mixing):
        """For GDAS, the sampled op of every edge (one host read per forward), else None."""
        if not METHODS[self.method].hard:
            return None
        return mixing.argmax(-1).tolist()

    def anchor_kl(self):
        """sum over edges of KL(Dir(beta) || Dir(1)): the `--reg_type kl` anchor (paper eq. 2).

        As the authors' code computes it, over the whole alpha vector of every edge, pruned ops
        included (their alpha is set to 0 when they are pruned, beta = 1) against Dir(1) over
        all ops, also after pruning."""
        beta = concentration(self.alpha)
        anchor = Dirichlet(torch.ones_like(beta), validate_args=False)
        return kl_divergence(Dirichlet(beta, validate_args=False), anchor).sum()

    @torch.no_grad()
    def prune(self, num_keep):
        """Keep the `num_keep` ops with the largest alpha on every edge (paper section 2.3); the
        alpha of every pruned op is set to 0, as the authors' prune() does."""
        if num_keep is None or num_keep >= len(self.kept[0]):
            return
        masked = torch.full_like(self.alpha, float("-inf"))
        masked.scatter_(1, self.kept_index, self.kept_alpha())
        top = masked.topk(num_keep, dim=-1).indices.sort(-1).values
        keep = torch.zeros_like(self.alpha, dtype=torch.bool).scatter_(1, top, True)
        self.alpha.masked_fill_(~keep, 0.0)
        self.set_kept(top.tolist())

    def set_kept(self, kept):
        """Restore the kept-op lists (from a checkpoint or a pruning step)."""
        if len(kept) != self.num_edges or len({len(ops) for ops in kept}) != 1:
            raise ValueError("every edge must keep the same number of operations")
        self.kept = [sorted(int(o) for o in ops) for ops in kept]
        self.kept_index = self._index_of(self.kept).to(self.alpha.device)

    def summary(self):
        """Plain lists for the results JSON: alpha, the expected weights and (DrNAS) beta."""
        out = {"alpha": self.alpha.detach().cpu().tolist(), "mean": self.mean().cpu().tolist()}
        if self.method == "dirichlet":
            beta = self._scatter(concentration(self.kept_alpha().detach()))
            out["beta"] = beta.cpu().tolist()
        if self.edge_spans is not None:
            out["edge_weights"] = self.edge_weights().detach().cpu().tolist()
        return out
