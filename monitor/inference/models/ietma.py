"""IETMA, the "improved ECAPA-TDNN" cry-reason classifier (../shared/docs/models.md §1, §7.1–7.3, §8).

Two variants:

* ``variant="code"`` (registered as ``ietma``) is the model the authors' published code defines, which is also
  the model their paper counted (1.43 M params, 0.32 G MACs): the exact layout of models.md §1.2–1.4 with the
  dead ``attn(256)`` and ``fc1`` left out, so ``sum(p.numel())`` is exactly 1,498,674 for 13 MFCC, 128 channels
  and 6 classes. Every quirk that changes the function is kept on purpose: ReLU *before* BN in the stem, the
  "RSE" input ``2x + SE(x)``, MCA's padded 1×1 convs, the global skip into blocks 2 and 3, the length-1
  differential attention (a gated projection, see :class:`DifferentialAttention`) and BatchNorm on the logits.
* ``variant="paper"`` (``ietma-paper``) swaps in our reading of what the paper *describes* (no code exists for
  it): the temporal-channel interactive RSE (:class:`InteractiveRse`) and a multi-scale dilated MCA
  (:class:`DilatedMca`). Everything else is the code model.

Ablations for the paper's table (each flag composes with either variant):

* ``use_mca=False``: MCA (128→64) becomes one plain ``Conv1d(128→64, k3, p1)``; the Res2DilatedConv wrapper
  around it (BN, ReLU, 64→128 conv, BN, residual) stays, so only the multi-scale attention is removed.
* ``use_rse=False``: every RSE (the three block inputs and the global skip) becomes the identity, so a block's
  residual is its plain input ``x`` and blocks 2–3 receive the stem output ``h0`` as the global skip.
* ``use_diff_attention=False``: the recalibration ``z = BN(DiffAttn(g)) ⊙ g`` becomes ``z = g``; the logits are
  ``BN(Linear(g))``.

Input is channels-first MFCC (B, 13, T) with T ≥ 3 (MCA's max-pool); output logits (B, num_classes). The
BatchNorm on the logits means training needs batches of at least 2.

Example:
    >>> import torch
    >>> model = Ietma().eval()
    >>> model(torch.zeros(2, 13, 100)).shape
    torch.Size([2, 6])
    >>> sum(p.numel() for p in model.parameters())
    1498674
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = ("code", "paper")


class SqueezeExcite(nn.Module):
    """``x ⊙ σ(W2·ReLU(W1·mean_t x))`` with bias-free W1: C→C//r and W2: C//r→C (the code's ``SEAttention``)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction, bias=False)
        self.fc2 = nn.Linear(channels // reduction, channels, bias=False)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The channel weights (B, C, 1) in (0, 1)."""
        return torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=-1))))).unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class CodedRse(nn.Module):
    """The code's "RSE": ``x + SE16(x) + x``, i.e. ``2x + SE(x)``: no temporal attention and no extra conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.se = SqueezeExcite(channels, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.se(x) + x


class InteractiveRse(nn.Module):
    """The paper's temporal-channel interactive RSE, as we read it (models.md §7.1):
    ``X + Conv1d_1x1((A_c A_tᵀ) ⊙ (X + SE(X)))``.

    ``A_c = σ(W2·ReLU(W1·mean_t X))`` ∈ R^C is a channel attention with its own MLP (reduction 16, bias-free, like
    SE but not shared with it, since the paper names two attentions); ``A_t = σ(Conv1d(2→1, k7, p3)([mean_c X;
    max_c X]))`` ∈ R^T is a CBAM-style temporal attention. Their outer product weights every (channel, frame)
    cell of ``X + SE(X)``; the 1×1 conv (with bias) mixes channels before the residual add. The issue writes the
    product as ``A_t A_cᵀ``; that is the same map transposed, and only ``A_c A_tᵀ`` has X's (C, T) shape.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.se = SqueezeExcite(channels, 16)
        self.channel_attention = SqueezeExcite(channels, 16)
        self.temporal_conv = nn.Conv1d(2, 1, 7, padding=3)
        self.mix = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a_c = self.channel_attention.gate(x)  # (B, C, 1)
        a_t = torch.sigmoid(self.temporal_conv(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))
        return x + self.mix(a_c * a_t * (x + self.se(x)))  # a_c * a_t broadcasts to the outer product (B, C, T)


class CodedMca(nn.Module):
    """The code's multi-scale conv attention (MCA), C → C_out, with its exact branch and padding layout.

    Four branches on x (B, C, T), each ending in ReLU: (1) 1×1 conv padded by 1 (T+2) → ReLU → k3 unpadded (T);
    (2) the same padded 1×1 → ReLU → k5 dilation 2 padding 3 (T); (3) k7 padding 3; (4) max-pool k3 stride 1
    unpadded (T−2) → 1×1 conv padded by 1 (T). The padded 1×1 convs put ``relu(bias)`` rather than zeros at the
    edges; we keep that because it changes the output. The 4C concat is SE-weighted (reduction 64) and projected
    to C_out by a 1×1 conv. Only branch 2 is dilated, despite the paper's "dilated convs k=3,5,7".
    """

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.pre3 = nn.Conv1d(channels, channels, 1, padding=1)
        self.conv3 = nn.Conv1d(channels, channels, 3)
        self.pre5 = nn.Conv1d(channels, channels, 1, padding=1)
        self.conv5 = nn.Conv1d(channels, channels, 5, dilation=2, padding=3)
        self.conv7 = nn.Conv1d(channels, channels, 7, padding=3)
        self.pool_proj = nn.Conv1d(channels, channels, 1, padding=1)
        self.se = SqueezeExcite(4 * channels, 64)
        self.out = nn.Conv1d(4 * channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (
            F.relu(self.conv3(F.relu(self.pre3(x)))),
            F.relu(self.conv5(F.relu(self.pre5(x)))),
            F.relu(self.conv7(x)),
            F.relu(self.pool_proj(F.max_pool1d(x, 3, stride=1))),
        )
        return self.out(self.se(torch.cat(branches, dim=1)))


class DilatedMca(nn.Module):
    """The paper's MCA, as we read it: parallel *dilated* convs k = 3, 5, 7 plus a max-pool branch, SE, projection.

    Every conv branch is ``ReLU(Conv1d(C→C, k, dilation d, 'same' zero padding))`` with d = 2 by default (the one
    dilation the code uses), giving receptive fields 5, 9 and 13 frames; the pool branch is
    ``ReLU(Conv1x1(MaxPool(k3, s1, p1)(x)))``. No padded 1×1 pre-convs. The 4C concat is SE-weighted
    (reduction 64, as coded) and projected to C_out so it drops into the same Res2DilatedConv wrapper.
    """

    def __init__(self, channels: int, out_channels: int, dilations: Sequence[int] = (2, 2, 2)) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv1d(channels, channels, k, dilation=d, padding=d * (k - 1) // 2) for k, d in zip((3, 5, 7), dilations)
        )
        self.pool_proj = nn.Conv1d(channels, channels, 1)
        self.se = SqueezeExcite(4 * channels, 64)
        self.out = nn.Conv1d(4 * channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [F.relu(conv(x)) for conv in self.convs]
        branches.append(F.relu(self.pool_proj(F.max_pool1d(x, 3, stride=1, padding=1))))
        return self.out(self.se(torch.cat(branches, dim=1)))


class Res2DilatedConv(nn.Module):
    """``u + BN(Conv1d(C/2→C, k3, dilation d)(ReLU(BN(mca(u)))))``: the code's residual wrapper around MCA.

    Despite the name there is no Res2Net channel split. ``mca`` maps C → C/2 (MCA, or a plain conv in the
    without-MCA ablation).
    """

    def __init__(self, channels: int, mca: nn.Module, dilation: int = 1) -> None:
        super().__init__()
        self.mca = mca
        self.bn1 = nn.BatchNorm1d(channels // 2)
        self.conv = nn.Conv1d(channels // 2, channels, 3, dilation=dilation, padding=dilation)
        self.bn2 = nn.BatchNorm1d(channels)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv(F.relu(self.bn1(self.mca(u))))) + u


class Block(nn.Module):
    """One improved SE-Res2 block: ``a = rse(x)``; conv-BN-ReLU; Res2DilatedConv; conv-BN; SE3; ``ReLU(· + a)``.

    The residual is the RSE-modified input ``a``, not ``x``, as coded.
    """

    def __init__(self, channels: int, rse: nn.Module, mca: nn.Module, reduction: int = 3, dilation: int = 1) -> None:
        super().__init__()
        self.rse = rse
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm1d(channels)
        self.res2 = Res2DilatedConv(channels, mca, dilation)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm1d(channels)
        self.se = SqueezeExcite(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.rse(x)
        h = self.res2(F.relu(self.bn1(self.conv1(a))))
        return F.relu(self.se(self.bn2(self.conv2(h))) + a)


class DifferentialAttention(nn.Module):
    """Multi-head differential attention (the code's ``MultiheadDiffAttn``), returning the gate ``x ⊙ σ(out)``.

    On tokens x (B, L, D): q, k are split into 2H heads of size ``D/(2H)``, v into H heads of size ``D/H``;
    ``A = softmax(q1 k1ᵀ/√d) − λ·softmax(q2 k2ᵀ/√d)`` with ``λ = exp(λq1·λk1) − exp(λq2·λk2) + λ_init``,
    ``λ_init = 0.8 − 0.6·exp(−0.3·depth)``; per-head RMSNorm (eps 1e-5, one shared affine weight) times
    ``1 − λ_init``; out projection; sigmoid gate on x. All projections are bias-free; λ vectors ~ N(0, 0.1²).
    The original also adds a causal mask, which we omit: IETMA only ever feeds L = 1, where it is a no-op.

    At L = 1 both softmax maps are exactly 1, so this is ``x ⊙ σ(W_o·RMSNorm((1−λ)·W_v x)·(1−λ_init))``: q and k
    get zero gradient and λ only reaches the output through the RMSNorm eps. We keep them anyway, because their
    parameters are in the 1.43 M the paper reports (models.md §1.4, §7.2).
    """

    def __init__(self, dim: int, n_heads: int = 4, depth: int = 9) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.head_dim = dim // n_heads // 2
        self.lambda_init = 0.8 - 0.6 * math.exp(-0.3 * depth)
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.out_proj = nn.Linear(dim, dim, bias=False)
        self.lambda_q1 = nn.Parameter(0.1 * torch.randn(self.head_dim))
        self.lambda_k1 = nn.Parameter(0.1 * torch.randn(self.head_dim))
        self.lambda_q2 = nn.Parameter(0.1 * torch.randn(self.head_dim))
        self.lambda_k2 = nn.Parameter(0.1 * torch.randn(self.head_dim))
        self.norm = nn.RMSNorm(2 * self.head_dim, eps=1e-5)

    def lam(self) -> torch.Tensor:
        """The scalar λ weighting the second attention map."""
        return (
            torch.exp(torch.dot(self.lambda_q1, self.lambda_k1))
            - torch.exp(torch.dot(self.lambda_q2, self.lambda_k2))
            + self.lambda_init
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, length, dim = x.shape
        h, d = self.n_heads, self.head_dim
        q = self.q_proj(x).view(b, length, 2 * h, d).transpose(1, 2) * d**-0.5
        k = self.k_proj(x).view(b, length, 2 * h, d).transpose(1, 2)
        v = self.v_proj(x).view(b, length, h, 2 * d).transpose(1, 2)
        maps = torch.softmax(q @ k.transpose(-1, -2), dim=-1).view(b, h, 2, length, length)
        attn = maps[:, :, 0] - self.lam() * maps[:, :, 1]
        out = self.norm(attn @ v) * (1 - self.lambda_init)  # (B, H, L, 2d)
        out = self.out_proj(out.transpose(1, 2).reshape(b, length, dim))
        return x * torch.sigmoid(out)


class Ietma(nn.Module):
    """Improved ECAPA-TDNN: MFCC (B, in_channels, T) → logits (B, num_classes). See the module docstring.

    ``dilations`` gives the Res2DilatedConv dilation per block (the code uses 1 everywhere; the parameter and
    MAC counts do not depend on it); its length is the number of blocks. ``reduction`` is SE3's.
    """

    def __init__(
        self,
        num_classes: int = 6,
        in_channels: int = 13,
        channels: int = 128,
        dilations: Sequence[int] = (1, 1, 1),
        reduction: int = 3,
        n_heads: int = 4,
        depth: int = 9,
        variant: str = "code",
        use_mca: bool = True,
        use_rse: bool = True,
        use_diff_attention: bool = True,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown IETMA variant {variant!r}; known: {', '.join(VARIANTS)}")
        self.stem = nn.Conv1d(in_channels, channels, 5, padding=2)
        self.stem_bn = nn.BatchNorm1d(channels)
        self.skip_rse = self._rse(channels, variant, use_rse)
        self.blocks = nn.ModuleList(
            Block(channels, self._rse(channels, variant, use_rse), self._mca(channels, variant, use_mca), reduction, d)
            for d in dilations
        )
        self.pool_bn = nn.BatchNorm1d(channels)
        self.attention = DifferentialAttention(channels, n_heads, depth) if use_diff_attention else None
        self.attention_bn = nn.BatchNorm1d(channels) if use_diff_attention else None
        self.fc = nn.Linear(channels, num_classes)
        self.logit_bn = nn.BatchNorm1d(num_classes)

    @staticmethod
    def _rse(channels: int, variant: str, enabled: bool) -> nn.Module:
        if not enabled:
            return nn.Identity()
        return CodedRse(channels) if variant == "code" else InteractiveRse(channels)

    @staticmethod
    def _mca(channels: int, variant: str, enabled: bool) -> nn.Module:
        if not enabled:
            return nn.Conv1d(channels, channels // 2, 3, padding=1)
        return CodedMca(channels, channels // 2) if variant == "code" else DilatedMca(channels, channels // 2)

    def embed(self, mfcc: torch.Tensor) -> torch.Tensor:
        """The pooled (and attention-weighted) vector the classifier reads, (B, channels)."""
        h = self.stem_bn(F.relu(self.stem(mfcc)))  # ReLU before BN, as coded
        skip = self.skip_rse(h)  # the same tensor is added after every block but the first
        for i, block in enumerate(self.blocks):
            h = block(h) if i == 0 else block(h) + skip
        g = self.pool_bn(h.mean(dim=-1))
        if self.attention is not None and self.attention_bn is not None:
            g = self.attention_bn(self.attention(g.unsqueeze(1)).squeeze(1)) * g
        return g

    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.logit_bn(self.fc(embedding))

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.logits(self.embed(mfcc))
