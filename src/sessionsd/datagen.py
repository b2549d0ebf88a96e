"""Realistic generated session data (SPEC §9), deterministic from a seed.

Used by the demo, the benchmarks and the tests; nothing is downloaded.

Keys look like the ones hosts really use (``agent:main:telegram:dm:821071206``,
``agent:main:cron:<uuid>:run:<uuid>``, ``agent:main:subagent:<uuid>`` …) and
entries carry the usual fields plus the large nested blobs that dominate real
stores (``skillsSnapshot``, ``systemPromptReport``).  The default size mix is
30 % stubs of 0.3–1 KB, 50 % entries of 20–60 KB and 20 % of 90–150 KB
(measured as compact JSON); ``small=True`` gives only stubs, for 100k-session
runs that must fit a small machine.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

__all__ = ["generate_keys", "generate_entry", "generate_store", "iter_store", "SIZE_MIX"]

#: (share, min bytes, max bytes) of compact JSON per entry.
SIZE_MIX = ((0.30, 300, 1_000), (0.50, 20_000, 60_000), (0.20, 90_000, 150_000))

_CHANNELS = ("telegram", "discord", "whatsapp", "slack", "signal", "imessage")
_MODELS = ("claude-sonnet-4-5", "gpt-5.2", "gemini-2.5-pro", "claude-opus-4-1", "llama-4-70b")
_WORDS = [
    "session", "agent", "skill", "prompt", "tool", "workspace", "context", "channel", "token",
    "model", "reply", "summary", "memory", "cache", "route", "heartbeat", "cron", "run",
    "subagent", "report", "snapshot", "file", "system", "user", "assistant", "message", "thread",
    "group", "policy", "queue", "debounce", "compaction", "the", "a", "of", "to", "and", "in",
    "for", "with", "on", "is", "that", "this", "from", "by", "as", "be", "it", "are", "or",
]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _key(rng: random.Random, index: int) -> str:
    kind = rng.random()
    if kind < 0.35:
        channel = rng.choice(_CHANNELS)
        return f"agent:main:{channel}:dm:{rng.randrange(10**8, 10**10)}"
    if kind < 0.55:
        return f"agent:main:cron:{_uuid(rng)}:run:{_uuid(rng)}"
    if kind < 0.75:
        return f"agent:main:subagent:{_uuid(rng)}"
    if kind < 0.9:
        channel = rng.choice(_CHANNELS)
        return f"agent:main:{channel}:group:-100{rng.randrange(10**9, 10**10)}:topic:{index % 97}"
    return f"agent:worker{index % 7}:discord:channel:{rng.randrange(10**17, 10**18)}"


def generate_keys(count: int, seed: int = 0) -> list[str]:
    """*count* distinct realistic session keys (lower-case, as stores hold them)."""
    rng = random.Random(seed)
    keys: list[str] = []
    seen: set[str] = set()
    index = 0
    while len(keys) < count:
        key = _key(rng, index)
        index += 1
        if key not in seen:
            seen.add(key)
            keys.append(key)
    return keys


class _TextPool:
    """Slices of one pseudo-random text, so generating 400 MB stays fast."""

    def __init__(self, rng: random.Random, size: int = 1 << 18) -> None:
        words = rng.choices(_WORDS, k=size // 4)
        self.text = " ".join(words)[:size]

    def take(self, rng: random.Random, length: int) -> str:
        length = max(0, min(length, len(self.text)))
        start = rng.randrange(0, len(self.text) - length + 1)
        return self.text[start : start + length]


def _base_entry(rng: random.Random, key: str, now_ms: int) -> dict[str, Any]:
    channel = key.split(":")[2] if key.count(":") >= 2 else "telegram"
    return {
        "sessionId": _uuid(rng),
        "updatedAt": now_ms - rng.randrange(0, 90 * 86_400_000),
        "sessionFile": f"{_uuid(rng)}.jsonl",
        "lastChannel": channel,
        "lastTo": str(rng.randrange(10**8, 10**10)),
        "chatType": rng.choice(("direct", "group", "channel")),
        "model": rng.choice(_MODELS),
        "modelProvider": rng.choice(("anthropic", "openai", "google")),
        "inputTokens": rng.randrange(0, 2_000_000),
        "outputTokens": rng.randrange(0, 200_000),
        "totalTokens": rng.randrange(0, 2_200_000),
        "compactionCount": rng.randrange(0, 12),
        "thinkingLevel": rng.choice(("off", "low", "medium", "high")),
        "systemSent": rng.random() < 0.5,
    }


def _blobs(rng: random.Random, pool: _TextPool, budget: int) -> dict[str, Any]:
    """skillsSnapshot + systemPromptReport filling about *budget* bytes."""
    skills_share = int(budget * rng.uniform(0.6, 0.85))
    n_skills = max(1, skills_share // 3_000)
    per_skill = max(50, (skills_share - skills_share // 5) // n_skills - 120)
    resolved = [
        {
            "name": f"skill-{i}",
            "description": pool.take(rng, 80),
            "body": pool.take(rng, per_skill),
        }
        for i in range(n_skills)
    ]
    report_share = budget - skills_share
    n_tools = max(1, report_share // 400)
    return {
        "skillsSnapshot": {
            "prompt": pool.take(rng, skills_share // 5),
            "skills": [{"name": s["name"]} for s in resolved],
            "resolvedSkills": resolved,
            "version": rng.randrange(1, 40),
        },
        "systemPromptReport": {
            "source": "run",
            "generatedAt": rng.randrange(1_700_000_000_000, 1_800_000_000_000),
            "systemPrompt": {"chars": report_share * 3, "projectContextChars": report_share},
            "tools": {
                "listChars": report_share // 2,
                "entries": [
                    {"name": f"tool_{i}", "summaryChars": rng.randrange(40, 900),
                     "schemaChars": rng.randrange(100, 4000), "summary": pool.take(rng, 200)}
                    for i in range(n_tools)
                ],
            },
        },
    }


def _target_size(rng: random.Random, small: bool) -> int:
    if small:
        return rng.randrange(300, 1_000)
    roll = rng.random()
    for share, low, high in SIZE_MIX:
        if roll < share:
            return rng.randrange(low, high)
        roll -= share
    return rng.randrange(SIZE_MIX[-1][1], SIZE_MIX[-1][2])


def generate_entry(rng: random.Random, pool: _TextPool, key: str, target: int,
                   now_ms: int = 1_790_000_000_000) -> dict[str, Any]:
    """One entry of about *target* bytes of compact JSON."""
    entry = _base_entry(rng, key, now_ms)
    base = len(json.dumps(entry, separators=(",", ":")))
    if target - base > 2_000:
        entry.update(_blobs(rng, pool, target - base - 600))
        # The blob layout only approximates the budget: top up to the target.
        deficit = target - len(json.dumps(entry, separators=(",", ":"))) - 60
        if deficit > 0:
            entry["pluginDebugEntries"] = [{"pluginId": "core", "lines": [pool.take(rng, deficit)]}]
    else:
        entry["label"] = pool.take(rng, max(0, target - base - 12))
    return entry


def iter_store(count: int, seed: int = 0, small: bool = False,
               now_ms: int = 1_790_000_000_000) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(key, entry)`` pairs one at a time (for stores too big to hold twice)."""
    rng = random.Random(seed ^ 0x5E55)
    pool = _TextPool(random.Random(seed))
    for key in generate_keys(count, seed):
        yield key, generate_entry(rng, pool, key, _target_size(rng, small), now_ms)


def generate_store(count: int, seed: int = 0, small: bool = False,
                   now_ms: int = 1_790_000_000_000) -> dict[str, dict[str, Any]]:
    """A whole store ``{key: entry}`` of *count* sessions."""
    return dict(iter_store(count, seed, small, now_ms))
