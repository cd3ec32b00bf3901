"""A PyTorch transcription of upstream MiniOneRec ``sasrec.py`` / ``SASRecModules_ori.py`` (commit
81b4ba9): the three models' ``forward_eval``, the training loss with the DRO term, and the
propensities, written out from a reading of that code for the parity tests (same parameter names,
same operations in the same order: the head split concatenates heads along the batch axis, the
GRU runs on a packed sequence, Caser squeezes and max-pools the horizontal convs, the DRO term is
computed against float64 propensities)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch
from torch import nn

NEG = -2 ** 32 + 1


class UpMHA(nn.Module):
    def __init__(self, hidden, num_heads, rate):
        super().__init__()
        self.hidden_size, self.num_heads = hidden, num_heads
        self.linear_q = nn.Linear(hidden, hidden)
        self.linear_k = nn.Linear(hidden, hidden)
        self.linear_v = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(rate)

    def forward(self, queries, keys):
        q, k, v = self.linear_q(queries), self.linear_k(keys), self.linear_v(keys)
        size = self.hidden_size // self.num_heads
        q_ = torch.cat(torch.split(q, size, dim=2), dim=0)
        k_ = torch.cat(torch.split(k, size, dim=2), dim=0)
        v_ = torch.cat(torch.split(v, size, dim=2), dim=0)
        scores = torch.bmm(q_, k_.transpose(1, 2)) / self.hidden_size ** 0.5
        key_mask = torch.sign(torch.abs(keys.sum(dim=-1))).repeat(self.num_heads, 1)
        key_mask = key_mask.unsqueeze(1).repeat(1, queries.shape[1], 1)
        scores = torch.where(torch.eq(key_mask, 0), torch.ones_like(scores) * NEG, scores)
        tril = torch.tril(torch.ones_like(scores[0, :, :])).unsqueeze(0).repeat(scores.shape[0], 1, 1)
        scores = torch.where(torch.eq(tril, 0), torch.ones_like(tril) * NEG, scores)
        weights = torch.softmax(scores, dim=-1)
        q_mask = torch.sign(torch.abs(queries.sum(dim=-1))).repeat(self.num_heads, 1)
        weights = weights * q_mask.unsqueeze(-1).repeat(1, 1, keys.shape[1])
        out = torch.bmm(self.dropout(weights), v_)
        out = torch.cat(torch.split(out, out.shape[0] // self.num_heads, dim=0), dim=2)
        return out + queries


class UpFFN(nn.Module):
    def __init__(self, hidden, rate):
        super().__init__()
        self.w_1 = nn.Conv1d(hidden, hidden, 1)
        self.w_2 = nn.Conv1d(hidden, hidden, 1)
        self.layer_norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(rate)

    def forward(self, x):
        out = self.w_2(torch.relu(self.w_1(x.transpose(1, 2)))).transpose(1, 2)
        return self.layer_norm(self.dropout(out) + x)


class UpSASRec(nn.Module):
    def __init__(self, hidden, item_num, state_size, rate, num_heads=1):
        super().__init__()
        self.state_size, self.hidden_size, self.item_num = state_size, hidden, item_num
        self.item_embeddings = nn.Embedding(item_num + 1, hidden)
        nn.init.normal_(self.item_embeddings.weight, 0, 0.01)
        self.positional_embeddings = nn.Embedding(state_size, hidden)
        self.emb_dropout = nn.Dropout(rate)
        self.ln_1, self.ln_2, self.ln_3 = nn.LayerNorm(hidden), nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.mh_attn = UpMHA(hidden, num_heads, rate)
        self.feed_forward = UpFFN(hidden, rate)
        self.s_fc = nn.Linear(hidden, item_num)

    def forward(self, states, len_states):
        emb = self.item_embeddings(states)
        emb += self.positional_embeddings(torch.arange(self.state_size))
        seq = self.emb_dropout(emb)
        mask = torch.ne(states, self.item_num).float().unsqueeze(-1)
        seq *= mask
        attn = self.mh_attn(self.ln_1(seq), seq)
        ff = self.feed_forward(self.ln_2(attn))
        ff *= mask
        ff = self.ln_3(ff)
        idx = (len_states - 1).view(-1, 1, 1).repeat(1, 1, self.hidden_size)
        return self.s_fc(torch.gather(ff, 1, idx)).squeeze()


class UpGRU(nn.Module):
    def __init__(self, hidden, item_num, state_size):
        super().__init__()
        self.item_embeddings = nn.Embedding(item_num + 1, hidden)
        nn.init.normal_(self.item_embeddings.weight, 0, 0.01)
        self.gru = nn.GRU(input_size=hidden, hidden_size=hidden, num_layers=1, batch_first=True)
        self.s_fc = nn.Linear(hidden, item_num)

    def forward(self, states, len_states):
        emb = self.item_embeddings(states)
        packed = nn.utils.rnn.pack_padded_sequence(emb, len_states.cpu(), batch_first=True, enforce_sorted=False)
        _, hidden = self.gru(packed)
        return self.s_fc(hidden.view(-1, hidden.shape[2]))


class UpCaser(nn.Module):
    def __init__(self, hidden, item_num, state_size, num_filters, filter_sizes, rate):
        super().__init__()
        self.hidden_size, self.item_num, self.filter_sizes = hidden, item_num, list(filter_sizes)
        self.num_filters = num_filters
        self.item_embeddings = nn.Embedding(item_num + 1, hidden)
        nn.init.normal_(self.item_embeddings.weight, 0, 0.01)
        self.horizontal_cnn = nn.ModuleList([nn.Conv2d(1, num_filters, (i, hidden)) for i in self.filter_sizes])
        for cnn in self.horizontal_cnn:
            nn.init.xavier_normal_(cnn.weight)
            nn.init.constant_(cnn.bias, 0.1)
        self.vertical_cnn = nn.Conv2d(1, 1, (state_size, 1))
        nn.init.xavier_normal_(self.vertical_cnn.weight)
        nn.init.constant_(self.vertical_cnn.bias, 0.1)
        self.num_filters_total = num_filters * len(self.filter_sizes)
        self.s_fc = nn.Linear(hidden + self.num_filters_total, item_num)
        self.dropout = nn.Dropout(rate)

    def forward(self, states, len_states):
        emb = self.item_embeddings(states)
        emb *= torch.ne(states, self.item_num).float().unsqueeze(-1)
        emb = emb.unsqueeze(1)
        pooled = []
        for cnn in self.horizontal_cnn:
            h = torch.relu(cnn(emb)).squeeze()
            pooled.append(nn.functional.max_pool1d(h, h.shape[2]))
        h_flat = torch.cat(pooled, 1).view(-1, self.num_filters_total)
        v_flat = torch.relu(self.vertical_cnn(emb)).view(-1, self.hidden_size)
        return self.s_fc(self.dropout(torch.cat([h_flat, v_flat], 1)))


def up_propensity(targets, item_num):
    freq = Counter(list(targets))
    pop = np.array([freq.get(i, 0) for i in range(item_num)])
    ps = (pop + 1) / np.sum(pop + 1)
    return np.power(ps, 0.05)


def up_loss(out, target, target_neg, ps, *, loss_type, alpha, beta):
    """Upstream's loss_all for one batch (``ps`` a float64 tensor, as upstream's)."""
    target, target_neg = target.view(-1, 1), target_neg.view(-1, 1)
    scores = torch.cat((torch.gather(out, 1, target), torch.gather(out, 1, target_neg)), 0)
    labels = torch.cat((torch.ones(len(target), 1), torch.zeros(len(target), 1)), 0)
    if loss_type == "bce":
        loss = nn.BCEWithLogitsLoss()(scores, labels)
    else:
        loss = nn.CrossEntropyLoss()(out, target.squeeze(-1).long())
    pos_dro = torch.squeeze(torch.gather(torch.mul(out * out, ps), 1, target))
    pos_loss_dro = torch.squeeze(torch.gather(torch.mul((out - 1) * (out - 1), ps), 1, target))
    inner = (torch.sum(torch.exp(torch.mul(out * out, ps) / beta), 1) - torch.exp(pos_dro / beta)
             + torch.exp(pos_loss_dro / beta))
    if alpha == 0.0:
        return loss
    return loss + alpha * torch.mean(torch.log(inner + 1e-24))
