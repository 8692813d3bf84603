"""The metadata-enhanced multi-task design (../shared/docs/models.md §8) on our CNN14 + attention-pooling body
instead of a speech SSL encoder. No code was published for it; this follows the paper's description:

* **Auxiliary tasks**: the baby's sex (m, f) and age band (Donate-a-cry's five) are *predicted* from the audio,
  each by a hidden layer (the task's hidden state) and a linear head. At run time the model needs no metadata.
* **ARI** (Augmented Residual Integration): every intermediate conv stage is summarised over time
  (``[mean_t; max_t]`` of its frequency-averaged map), projected to ``ari_dim``, and the stages are integrated
  with a learned weight *matrix* (one softmax over stages per output dimension, not one scalar per stage), then
  joined (concatenated) to the last stage's pooled embedding.
* **Co-attention**: the ARI output forms a query that attends over the two auxiliary hidden states; the attended
  context re-weights the ARI features (a sigmoid gate per feature), and the re-weighted features plus both
  auxiliary hidden states feed the reason head. That concatenation is the :meth:`embed` vector.
* **Two-stage fine-tuning** is the training recipe's (monitor/training/classifier.py): stage 1 trains on the
  auxiliary losses only; stage 2 freezes :meth:`lowest_layers` and trains the reason with the auxiliaries.

Example:
    >>> import torch
    >>> net = MultiTaskCnn14(num_classes=5, widths=(16, 32, 64, 128, 256, 512)).eval()
    >>> [t.shape[1] for t in net.all_logits(torch.zeros(2, 64, 64))]
    [5, 2, 5]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from monitor.core.baby import AGE_BANDS, SEXES
from monitor.inference.features import N_MELS
from monitor.inference.models.cnn10 import ConvBlock, conv_features, xavier_init
from monitor.inference.models.cnn14 import MultiHeadAttentionPooling


class MultiTaskCnn14(nn.Module):
    """Log-mel (B, T, mels) → reason logits (B, num_classes); :meth:`all_logits` adds the sex and age-band logits."""

    def __init__(self, num_classes: int = 6, widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048),
                 n_heads: int = 8, ari_dim: int = 128, aux_hidden: int = 64, n_mels: int = N_MELS) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(n_mels)
        channels = (1, *widths)
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in zip(channels[:-2], channels[1:-1]))
        self.blocks.append(ConvBlock(channels[-2], channels[-1], pool=None))
        width = widths[-1]
        self.pool = MultiHeadAttentionPooling(width, n_heads)
        self.fc1 = nn.Linear(width, width)
        self.stage_projections = nn.ModuleList(nn.Linear(2 * c, ari_dim) for c in widths[:-1])
        self.stage_weights = nn.Parameter(torch.zeros(len(widths) - 1, ari_dim))
        joined = width + ari_dim
        self.aux_hidden = nn.ModuleList(nn.Sequential(nn.Linear(joined, aux_hidden), nn.ReLU()) for _ in range(2))
        self.aux_heads = nn.ModuleList(nn.Linear(aux_hidden, n) for n in (len(SEXES), len(AGE_BANDS)))
        self.query = nn.Linear(joined, aux_hidden)
        self.gate = nn.Linear(aux_hidden, joined)
        self.head = nn.Linear(joined + 2 * aux_hidden, num_classes)
        xavier_init(self)

    def lowest_layers(self) -> list[nn.Module]:
        """What stage 2 of the fine-tuning freezes: the input normalisation and the first two conv stages."""
        return [self.bn0, *self.blocks[:2]]

    def _integrated(self, logmel: torch.Tensor) -> torch.Tensor:
        """ARI: the last stage's pooled embedding joined to the weighted integration of the earlier stages."""
        stages: list[torch.Tensor] = []  # each (B, C, T')
        last = conv_features(logmel, self.bn0, self.blocks, self.training, stages=stages)
        last = F.relu(self.fc1(F.dropout(self.pool(last), p=0.5, training=self.training)))
        summaries = torch.stack([projection(torch.cat([s.mean(dim=2), s.amax(dim=2)], dim=1))
                                 for projection, s in zip(self.stage_projections, stages[:-1])], dim=1)
        integrated = (torch.softmax(self.stage_weights, dim=0) * summaries).sum(dim=1)
        return torch.cat([last, integrated], dim=1)

    def _embed_and_aux(self, logmel: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        joined = self._integrated(logmel)
        hidden = [layer(joined) for layer in self.aux_hidden]
        keys = torch.stack(hidden, dim=1)  # (B, 2, aux_hidden)
        scores = (keys @ self.query(joined).unsqueeze(2)).squeeze(2) / math.sqrt(keys.shape[2])
        context = (torch.softmax(scores, dim=1).unsqueeze(2) * keys).sum(dim=1)
        reweighted = joined * torch.sigmoid(self.gate(context))
        return torch.cat([reweighted, *hidden], dim=1), [head(h) for head, h in zip(self.aux_heads, hidden)]

    def embed(self, logmel: torch.Tensor) -> torch.Tensor:
        return self._embed_and_aux(logmel)[0]

    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(embedding)

    def all_logits(self, logmel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(reason, sex, age band) logits."""
        embedding, (sex, age) = self._embed_and_aux(logmel)
        return self.head(embedding), sex, age

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        return self.logits(self.embed(logmel))
