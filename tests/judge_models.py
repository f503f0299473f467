"""Tiny judge models for the judge tests, trained offline in seconds on the toy world's texts.

* :func:`build_classifier_judge`: a ``LlamaForSequenceClassification`` (hidden 32, 1 layer) trained on
  (harmful prompt, response) pairs, label ``unsafe`` for the toy world's compliance answers and ``safe``
  for its refusals, fed exactly as :class:`~safety_tradeoff.judges.ClassifierJudge` feeds it.
* :func:`build_causal_judge`: a ``LlamaForCausalLM`` (hidden 32, 1 layer) trained to answer both published
  judge formats: Llama Guard 3 (``\\n\\nsafe`` / ``\\n\\nunsafe\\nS<k>``) and the HarmBench classifier
  (``Yes`` / ``No``), with the prompts built by :mod:`safety_tradeoff.judges.formats`.

Texts come from the toy world's generators (``safety_tradeoff.toyworld.data``), no built world needed.
Held-out actions (whole (category, action) pairs) are kept for the accuracy checks. Both judges share one
word-level tokenizer whose vocabulary covers the templates and the toy texts; newlines are tokens (the
Llama Guard answer has lines), spaces are not.
"""
from __future__ import annotations

import random
import time
from pathlib import Path

import torch

from safety_tradeoff.judges.formats import FORMATS
from safety_tradeoff.toyworld import data as toy

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
            "<|eot_id|>"]
# toy categories -> Llama Guard 3 codes (what the tiny Llama Guard learns to name)
CATEGORY_CODES = {"weapons": "S9", "malware": "S2", "fraud": "S2", "selfharm": "S11", "hate": "S10", "drugs": "S2",
                  "privacy": "S7", "vandalism": "S2", "cheating": "S2", "harassment": "S1"}


def _pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[^\S\n]+"), behavior="removed"),
        pre_tokenizers.Split(Regex(r"\n"), behavior="isolated"),
        pre_tokenizers.Punctuation(behavior="isolated"),
    ])


def build_tokenizer():
    """Word-level tokenizer over the judge templates and the toy world's texts (sorted vocabulary)."""
    from tokenizers import Tokenizer, models, processors
    from transformers import PreTrainedTokenizerFast

    texts = [fmt.build("x", "x") for fmt in FORMATS.values()] + list(toy.vocabulary_text())
    texts += ["safe unsafe Yes No " + " ".join(f"S{i}" for i in range(1, 15))]
    pre = _pre_tokenizer()
    words = sorted({piece for text in texts for piece, _ in pre.pre_tokenize_str(text)} - set(SPECIALS))
    vocab = {token: i for i, token in enumerate(SPECIALS + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    tok.add_special_tokens(SPECIALS)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A </s> $B", special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", additional_special_tokens=SPECIALS[4:], model_max_length=1024)


# ------------------------------------------------------------------------------------------------ data
def toy_pairs(seed: int = 0, held_out: float = 0.25):
    """(train, test) lists of (prompt, response, unsafe, category): compliance answers are unsafe, refusals
    safe. Test pairs use (category, action)s never seen in training."""
    rng = random.Random(seed)
    actions = [(c, a, toy.HARM_TEMPLATES_ORIG) for c, acts in toy.HARM_ORIG.items() for a in acts]
    actions += [(c, a, toy.HARM_TEMPLATES_FAR) for c, acts in toy.HARM_FAR.items() for a in acts]
    rng.shuffle(actions)
    k = int(len(actions) * held_out)
    refusals = toy.REFUSALS_ORIG + toy.REFUSALS_FAR

    def pairs(items, n):
        out = []
        for i in range(n):
            category, action, templates = items[i % len(items)]
            prompt = rng.choice(templates).format(a=action)
            if i % 2:
                out.append((prompt, rng.choice(toy.COMPLIANCE).format(a=action), True, category))
            else:
                out.append((prompt, rng.choice(refusals), False, category))
        return out

    return pairs(actions[k:], 512), pairs(actions[:k], 64)


def _train(model, batches, steps: int, lr: float) -> float:
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * max(0.05, 1 - s / steps))
    model.train()
    loss = torch.tensor(0.0)
    for step in range(steps):
        out = model(**batches[step % len(batches)])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        loss = out.loss.detach()
    model.eval()
    return float(loss)


def _llama_config(tok, layers: int, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                       tie_word_embeddings=False, **extra)


# ------------------------------------------------------------------------------------------------ judges
def build_classifier_judge(path: Path, steps: int = 120, seed: int = 0) -> Path:
    """Train and save the tiny classifier judge (id2label {0: safe, 1: unsafe}); returns `path`."""
    from transformers import LlamaForSequenceClassification

    from safety_tradeoff.judges.adapters import ClassifierJudge

    tok = build_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForSequenceClassification(_llama_config(tok, 1, num_labels=2, id2label={0: "safe", 1: "unsafe"},
                                                         label2id={"safe": 0, "unsafe": 1}))
    feed = ClassifierJudge(model, tok, name="training", unsafe_labels=[1])  # the adapter's own encoding
    train, _ = toy_pairs(seed)
    batches = []
    for i in range(0, len(train), 32):
        chunk = train[i:i + 32]
        enc = dict(feed.encode([p for p, *_ in chunk], [r for _, r, *_ in chunk]))
        enc["labels"] = torch.tensor([int(u) for _, _, u, _ in chunk])
        batches.append(enc)
    start = time.perf_counter()
    loss = _train(model, batches, steps, 3e-3)
    print(f"classifier judge: {steps} steps in {time.perf_counter() - start:.1f} s, final loss {loss:.3f}")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def causal_targets(unsafe: bool, category: str) -> dict[str, str]:
    """What the tiny causal judge answers in each format (Llama Guard 3 writes "\\n\\n" first)."""
    return {"llama_guard": "\n\n" + (f"unsafe\n{CATEGORY_CODES[category]}" if unsafe else "safe"),
            "harmbench": "Yes" if unsafe else "No"}


def build_causal_judge(path: Path, steps: int = 200, seed: int = 0, batch_size: int = 8) -> Path:
    """Train and save the tiny causal judge answering both formats; returns `path`."""
    from transformers import LlamaForCausalLM

    tok = build_tokenizer()
    torch.manual_seed(seed)
    model = LlamaForCausalLM(_llama_config(tok, 1))
    train, _ = toy_pairs(seed)
    rows = []
    for i, (prompt, response, unsafe, category) in enumerate(train):
        name = ("llama_guard", "harmbench")[(i // 2) % 2]
        fmt = FORMATS[name]
        context = tok(fmt.build(prompt, response), add_special_tokens=fmt.add_special_tokens)["input_ids"]
        answer = tok(causal_targets(unsafe, category)[name], add_special_tokens=False)["input_ids"]
        rows.append((context, answer + [tok.eos_token_id]))
    batches = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        width = max(len(c) + len(a) for c, a in chunk)
        ids = torch.full((len(chunk), width), tok.pad_token_id)
        labels = torch.full((len(chunk), width), -100)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for j, (c, a) in enumerate(chunk):
            seq = c + a
            ids[j, :len(seq)] = torch.tensor(seq)
            labels[j, len(c):len(seq)] = torch.tensor(a)
            mask[j, :len(seq)] = 1
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    start = time.perf_counter()
    loss = _train(model, batches, steps, 4e-3)  # 1 layer, batch 8: ~10 s on one CPU thread
    print(f"causal judge: {steps} steps in {time.perf_counter() - start:.1f} s, final loss {loss:.3f}")
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
