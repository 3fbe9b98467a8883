"""Look-alike lures: near-duplicate messages sent by several internal accounts to many internal
recipients in a short window (Internal Spearphishing, T1534; the seed's "similar phishing emails
sent from real accounts"; detections.md §2 idea 14, §3 gap 8).

Pure functions; the mail-flow analytic (``analytics/mailflow.py``) gives them the sends.

1. *Text* of a message: its subject without reply/forward prefixes and tags, its attachment
   names and (where a source has it) the start of its body; then a *skeleton* — lower case,
   digits → ``#``, white space collapsed — so "Invoice 4512 for Ann" and "Invoice 9931 for Bob"
   start closer. Identical skeletons are hashed once: millions of sends have far fewer texts.
2. *Similarity*: character shingles → MinHash signatures (``datasketch``), and LSH buckets
   (``datasketch.MinHashLSH``; bands and rows chosen for the ``similarity`` threshold). Texts
   that share a bucket are joined when their estimated Jaccard similarity reaches the threshold
   (checked against the bucket's first member: work linear in bucket size — never all pairs).
   Joined texts form clusters (union–find).
3. *Campaign*: inside one cluster, a sliding ``window_minutes`` window in which at least
   ``min_senders`` distinct internal accounts reach at least ``min_recipients`` distinct
   internal recipients. Windows that overlap or touch form one episode.
4. *Not a campaign*: a **reply storm** — mostly replies/forwards (``reply_share``) that mostly
   go to one address (``top_recipient_share``): many people answering "RE: Holiday party RSVP"
   to the organiser, or replying-all to one list; without recipient addresses, replies of at
   most two recipients each. A **recurring template** — the cluster is also sent on
   ``recurring_days`` other days of the input (daily stand-up notes, timesheets). A **common
   subject** — fewer than ``min_senders`` of the accounts wrote to ``min_recipients_per_sender``
   internal recipients each ("Quick question" to one colleague each).
   Automatic replies and meeting responses never count.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from delegatewatch.config import LuresConfig

#: Reply / forward prefixes in the languages Outlook and Gmail write (repeated, bracketed, numbered).
_RESPONSE = re.compile(r"^\s*(?:(?:re|aw|sv|vs|antw|antwort|r|rif|ref|odp|res|ynt|vá|回复|答复|返信)"
                       r"|(?:fw|fwd|wg|tr|rv|enc|doorst|i|vl|pd|fs|továbbítás|转发|転送))\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*",
                       re.IGNORECASE)
_TAG = re.compile(r"^\s*\[(?:external|ext|extern|externe|external sender|caution|warning|spam|suspected spam|"
                  r"secure|encrypt|confidential)[^\]]*\]\s*", re.IGNORECASE)
#: Automatic replies and meeting responses: sent by many accounts to one address by design.
_AUTO = re.compile(r"^\s*(?:automatic reply|auto(?:matic)?[- ]?reply|out of (?:the )?office|abwesenheitsnotiz|"
                   r"automatische antwort|réponse automatique|respuesta automática|accepted|declined|tentative|"
                   r"tentatively accepted|angenommen|abgelehnt|mit vorbehalt angenommen|accepté|refusé|"
                   r"undeliverable|delivery status notification)\s*[:：]", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")
_ATTACHMENT_SIZE = re.compile(r"\s*\(\d+b\)\s*$", re.IGNORECASE)


def normalise_subject(subject: str | None) -> tuple[str, bool, bool]:
    """(subject without prefixes and tags, is a reply or forward, is an automatic message)."""
    s = (subject or "").strip()
    if _AUTO.match(s):
        return s, True, True
    response = False
    while True:
        m = _RESPONSE.match(s) or _TAG.match(s)
        if not m:
            break
        response = response or bool(_RESPONSE.match(s))
        s = s[m.end():]
    return s.strip(), response, False


def skeleton(text: str) -> str:
    return _SPACE.sub(" ", _DIGITS.sub("#", text.lower())).strip()


def attachment_names(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """UAL ``Item.Attachments`` (``"a.pdf (8192b); b.png (2b)"``) or a list → names."""
    if not value:
        return ()
    parts = value.split(";") if isinstance(value, str) else list(value)
    names = []
    for part in parts:
        name = str(part).strip()
        head, sep, size = name.rpartition("(")
        # "logo.png (8192b)": drop the size without a regex (this runs for every sent message)
        if sep and size[:-2].isdigit() and size[-2:].lower() == "b)":
            name = head.strip()
        if name:
            names.append(name)
    return tuple(names)


def text_of(subject: str, attachments: Sequence[str] = (), body: str | None = None) -> str:
    parts = [subject]
    if attachments:
        parts.append(" ".join(sorted(attachments)))
    if body:
        parts.append(body[:500])
    return skeleton(" | ".join(p for p in parts if p))


def shingles(text: str, k: int) -> set[bytes]:
    data = text.encode("utf-8")
    if len(data) <= k:
        return {data}
    return {data[i:i + k] for i in range(len(data) - k + 1)}


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def cluster_texts(texts: Sequence[str], cfg: LuresConfig) -> list[int]:
    """Cluster label (the smallest member index) of each text; near-duplicates share one.

    datasketch makes the MinHash signatures and chooses the LSH bands × rows for the threshold; the
    banding itself is done here with numpy over the signature matrix, because datasketch's in-memory
    LSH index costs ~4 KB a text (1.3 GB for 300 k texts) where the matrix costs 8 bytes a
    permutation. Texts in one bucket of any band are joined to the bucket's first member when their
    estimated Jaccard similarity reaches the threshold."""
    from datasketch import MinHash, MinHashLSH

    n = len(texts)
    if n == 0:
        return []
    num_perm, threshold = int(cfg.num_perm), float(cfg.similarity)
    sig = np.empty((n, num_perm), dtype=np.uint64)
    batch = 20_000  # shingle sets and MinHash objects exist for one batch at a time
    for lo in range(0, n, batch):
        for i, m in enumerate(MinHash.bulk([shingles(t, int(cfg.shingle)) for t in texts[lo:lo + batch]],
                                           num_perm=num_perm), lo):
            sig[i] = m.hashvalues
    params = MinHashLSH(threshold=threshold, num_perm=num_perm)  # only its bands × rows
    uf = _UnionFind(n)
    for band in range(params.b):
        heads, members = _bucket_pairs(sig[:, band * params.r:(band + 1) * params.r])
        if not len(members):
            continue
        ok = (sig[members] == sig[heads]).mean(axis=1) >= threshold
        for h, m in zip(heads[ok].tolist(), members[ok].tolist()):
            uf.union(h, m)
    return [uf.find(i) for i in range(n)]


def _bucket_pairs(band: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(head, member) for every text that shares this band's bucket with an earlier text; the head
    is the bucket's first text. The band's rows are mixed into one 64-bit key (a collision only adds
    a candidate, which the similarity test then rejects)."""
    key = np.zeros(len(band), dtype=np.uint64)
    for j in range(band.shape[1]):
        key = (key ^ band[:, j]) * np.uint64(0x9E3779B97F4A7C15)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    heads = first[inverse.ravel()]
    members = np.flatnonzero(heads != np.arange(len(band)))
    return heads[members], members


@dataclass(slots=True)
class Message:
    """What the lure analytic needs of one send."""

    ref: int  # the caller's index of the send
    time: float  # epoch seconds
    sender: str
    subject: str | None
    attachments: tuple[str, ...] = ()
    body: str | None = None
    #: internal recipient addresses when the source lists them; None when it gives only a count
    internal: tuple[str, ...] | None = None
    #: recipients when the addresses are unknown (UAL recipientCount)
    count: int | None = None


@dataclass
class Campaign:
    cluster: int
    start: float
    end: float
    messages: list[Message]
    senders: list[str]
    subjects: list[str]
    attachments: list[str]
    reach: int  # distinct internal recipients (plus counts where addresses are unknown)
    reply_share: float
    top_recipient_share: float | None
    #: why it is not reported ("reply storm", "recurring template"), or None for a campaign
    suppressed: str | None = None
    other_days: int = 0
    extra: dict = field(default_factory=dict)


def find_campaigns(messages: Sequence[Message], cfg: LuresConfig) -> list[Campaign]:
    """Campaigns and the episodes suppressed as benign (``suppressed`` says why)."""
    prepared: list[tuple[Message, bool]] = []
    texts: dict[str, int] = {}
    text_ids: list[int] = []
    memo: dict[tuple, tuple[str, bool, bool]] = {}  # subjects repeat: normalise each once
    for m in messages:
        if not m.internal and not (m.internal is None and (m.count or 0) > 0):
            continue  # no internal recipient
        key = (m.subject, m.attachments, m.body)
        hit = memo.get(key)
        if hit is None:
            subject, response, auto = normalise_subject(m.subject)
            hit = memo[key] = (text_of(subject, m.attachments, m.body), response, auto)
        t, response, auto = hit
        if auto or not t:
            continue
        prepared.append((m, response))
        text_ids.append(texts.setdefault(t, len(texts)))
    labels = cluster_texts(list(texts), cfg)
    by_cluster: dict[int, list[int]] = defaultdict(list)
    for i, tid in enumerate(text_ids):
        by_cluster[labels[tid]].append(i)
    out: list[Campaign] = []
    window = float(cfg.window_minutes) * 60
    for label, members in by_cluster.items():
        senders_total = {prepared[i][0].sender for i in members}
        if len(senders_total) < cfg.min_senders:
            continue
        members.sort(key=lambda i: prepared[i][0].time)
        cluster_days = {int(prepared[i][0].time // 86400) for i in members}  # once per cluster, not episode
        for episode in _episodes([prepared[i][0] for i in members], window, cfg):
            ep_msgs = [prepared[members[k]] for k in episode]
            own_days = {int(m.time // 86400) for m, _ in ep_msgs}
            out.append(_describe(label, ep_msgs, len(cluster_days - own_days), cfg))
    out.sort(key=lambda c: (c.start, c.senders))
    return out


def _reach(msgs: Sequence[Message]) -> int:
    addresses: set[str] = set()
    unknown = 0
    for m in msgs:
        if m.internal is None:
            unknown += m.count or 0
        else:
            addresses.update(m.internal)
    return len(addresses) + unknown


def _episodes(msgs: Sequence[Message], window: float, cfg: LuresConfig) -> list[list[int]]:
    """Indices of messages in qualifying windows, grouped into episodes (a sliding window)."""
    marked = [False] * len(msgs)
    # plain dicts of counts in the window (Counter.update/subtract cost several times more here)
    senders: dict[str, int] = {}
    addresses: dict[str, int] = {}
    unknown = 0
    j = done = 0
    for i, m in enumerate(msgs):
        senders[m.sender] = senders.get(m.sender, 0) + 1
        if m.internal is None:
            unknown += m.count or 0
        else:
            for a in set(m.internal):
                addresses[a] = addresses.get(a, 0) + 1
        while msgs[j].time < m.time - window:
            old = msgs[j]
            _drop(senders, old.sender)
            if old.internal is None:
                unknown -= old.count or 0
            else:
                for a in set(old.internal):
                    _drop(addresses, a)
            j += 1
        if len(senders) >= cfg.min_senders and len(addresses) + unknown >= cfg.min_recipients:
            for k in range(max(j, done), i + 1):
                marked[k] = True
            done = i + 1
    episodes: list[list[int]] = []
    last = None
    for k, flag in enumerate(marked):
        if not flag:
            continue
        if last is not None and episodes and msgs[k].time - msgs[last].time <= window:
            episodes[-1].append(k)
        else:
            episodes.append([k])
        last = k
    return episodes


def _drop(counts: dict[str, int], key: str) -> None:
    n = counts[key] - 1
    if n:
        counts[key] = n
    else:
        del counts[key]


def _describe(label: int, items: Sequence[tuple[Message, bool]], other_days: int, cfg: LuresConfig) -> Campaign:
    msgs = [m for m, _ in items]
    replies = sum(1 for _, r in items if r)
    reply_share = replies / len(items)
    known = [m for m in msgs if m.internal is not None]
    top_share = None
    if known:
        per_address: Counter[str] = Counter()
        for m in known:
            per_address.update(set(m.internal or ()))
        top_share = per_address.most_common(1)[0][1] / len(known) if per_address else 0.0
    suppressed = None
    if reply_share >= cfg.reply_share:
        if top_share is not None and top_share >= cfg.top_recipient_share:
            suppressed = "reply storm: replies that mostly go to one address"
        elif top_share is None and all((m.count or 0) <= 2 for m in msgs):
            suppressed = "reply storm: replies to one or two recipients each"
        elif top_share is None and _one_list(msgs):
            suppressed = "reply storm: reply-all on one list (every reply has about the same recipient count)"
    if suppressed is None and other_days >= cfg.recurring_days:
        suppressed = f"recurring template: also sent on {other_days} other days"
    if suppressed is None:
        per_sender: dict[str, set[str]] = defaultdict(set)
        unknown: Counter[str] = Counter()
        for m in msgs:
            if m.internal is None:
                unknown[m.sender] += m.count or 0
            else:
                per_sender[m.sender].update(m.internal)
        wide = sum(1 for a in {m.sender for m in msgs}
                   if len(per_sender[a]) + unknown[a] >= cfg.min_recipients_per_sender)
        if wide < cfg.min_senders:
            suppressed = (f"common subject: only {wide} account(s) wrote to {cfg.min_recipients_per_sender} "
                          f"or more internal recipients")
    subjects = list(dict.fromkeys(m.subject or "" for m in msgs))
    senders = sorted({m.sender for m in msgs})
    attachments = sorted({a for m in msgs for a in m.attachments})
    return Campaign(label, msgs[0].time, msgs[-1].time, msgs, senders, subjects, attachments, _reach(msgs),
                    reply_share, top_share, suppressed, other_days)


def _one_list(msgs: Sequence[Message]) -> bool:
    """Without addresses (UAL ``Send`` without ``recipientList``): replies that all go to about the
    same number of people (within ±2, or ±10 % of a large list) are a reply-all on one list; lures
    sent from several accounts reach each account's own contacts, whose counts differ."""
    counts = [m.count for m in msgs if m.count]
    if len(counts) < len(msgs) or not counts:
        return False
    return max(counts) - min(counts) <= max(2, 0.1 * min(counts))


def candidate_mask(labels: np.ndarray, senders: np.ndarray, times: np.ndarray, reach: np.ndarray,
                   cfg: LuresConfig) -> np.ndarray:
    """Columnar prefilter for very large inputs: which messages can be part of a campaign.

    ``labels``: each message's cluster (from :func:`cluster_texts` over the distinct texts),
    ``senders``: sender ids, ``times``: epoch seconds, ``reach``: internal recipients of each
    message. Any sliding window of ``window_minutes`` W lies inside one bucket of length 2W on
    the grid offset 0 or W, so a message is kept only when its (cluster, bucket) has at least
    ``min_senders`` distinct senders and ``min_recipients`` recipients in all (necessary
    conditions); :func:`find_campaigns` then decides on the few messages left."""
    w = int(float(cfg.window_minutes) * 60)
    labels = np.asarray(labels, dtype=np.int64)
    senders = np.asarray(senders, dtype=np.int64)
    keep = np.zeros(len(labels), dtype=bool)
    n_senders = int(senders.max()) + 1 if len(senders) else 1
    for offset in (0, w):
        bucket = (np.asarray(times, dtype=np.int64) + offset) // (2 * w)
        group = labels * (int(bucket.max()) + 1) + bucket
        ug, inv = np.unique(group, return_inverse=True)
        pairs = np.unique(inv.astype(np.int64) * n_senders + senders)
        distinct = np.bincount(pairs // n_senders, minlength=len(ug))
        total = np.bincount(inv, weights=reach, minlength=len(ug))
        ok = (distinct >= cfg.min_senders) & (total >= cfg.min_recipients)
        keep |= ok[inv]
    return keep
