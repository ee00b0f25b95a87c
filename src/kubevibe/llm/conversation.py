"""The conversation of a conversational run, and how it is trimmed to the model's context like a chat client does.

The whole conversation is kept in RunState (so resume and replay continue it); what is *sent* may be shorter:
the system prompt, the opening request and the latest turn always go, older turns are dropped oldest first (an
assistant answer together with the user turn that followed it, so roles keep alternating), and once any answer
was dropped the latest files are restated in the last user turn. What was dropped is returned for the record.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from kubevibe.llm.base import ChatMessage
from kubevibe.text import trim_middle

CHARS_PER_TOKEN = 3  # the same rough measure the Fix stage budgets its evidence with
MIN_BUDGET_CHARS = 4000
FILES_NOTE = "Earlier turns of our conversation were left out to fit the context. The files as they stand now:"


class Conversation(BaseModel):
    """One conversation per run: every turn as it was, and the files it has produced so far."""

    messages: list[ChatMessage] = Field(default_factory=list)  # system, the opening request, then turns
    files: dict[str, str] = Field(default_factory=dict)  # the latest content of each file (logical keys)
    names: dict[str, str] = Field(default_factory=dict)  # logical key -> the file name the model used
    pending: str | None = None  # why the last answer was unusable, said in the next user turn

    @property
    def turns(self) -> int:
        """Assistant answers so far."""
        return sum(1 for m in self.messages if m.role == "assistant")


class Fitted(BaseModel):
    messages: list[ChatMessage]
    record: dict


def render_files(files: dict[str, str]) -> str:
    """Files the way the model is asked to write them: a File line, then a fenced block."""
    parts = []
    for name, content in files.items():
        fence = "~~~~" if "```" in content else "```"
        parts.append(f"File: {name}\n{fence}\n{content.rstrip()}\n{fence}")
    return "\n\n".join(parts)


def context_budget(num_ctx: int, max_tokens: int) -> int:
    """Characters the conversation may take: the context less the room kept for the answer."""
    return max(MIN_BUDGET_CHARS, (num_ctx - min(max_tokens, num_ctx // 2)) * CHARS_PER_TOKEN)


def _size(messages: list[ChatMessage]) -> int:
    return sum(len(m.content) for m in messages)


def fit_to_context(messages: list[ChatMessage], files: dict[str, str], budget: int) -> Fitted:
    """The messages to send: all of them if they fit, else trimmed (see the module docstring)."""
    record = {"turns": len(messages), "sent": len(messages), "dropped": [], "dropped_chars": 0,
              "files_restated": False, "last_turn_cut": False}
    if _size(messages) <= budget or len(messages) <= 3:
        return Fitted(messages=list(messages), record=record)
    head, middle, last = list(messages[:2]), list(messages[2:-1]), messages[-1]
    dropped: list[int] = []
    index = 2
    # Drop (assistant, user) pairs from the oldest; keep the latest answer while any older pair is left.
    restated = ChatMessage(role=last.role, content=f"{FILES_NOTE}\n\n{render_files(files)}\n\n{last.content}")
    while len(middle) > 1 and _size(head + middle + [restated]) > budget:
        take = 2 if len(middle) >= 3 else 1
        for _ in range(take):
            record["dropped_chars"] += len(middle.pop(0).content)
            dropped.append(index)
            index += 1
    if not dropped:  # only the latest answer is in the middle and still too long: say it was left out
        dropped.append(index)
        record["dropped_chars"] += len(middle[0].content)
        middle = [ChatMessage(role="assistant", content="(my previous answer, left out here to fit the context)")]
    if middle and middle[0].role != "assistant":  # keep roles alternating: user, assistant, user
        record["dropped_chars"] += len(middle.pop(0).content)
        dropped.append(index)
    sent = head + middle + [restated]
    record["files_restated"] = True
    overflow = _size(sent) - budget
    if overflow > 0:
        sent[-1] = ChatMessage(role=last.role, content=trim_middle(sent[-1].content,
                                                                   max(1000, len(sent[-1].content) - overflow)))
        record["last_turn_cut"] = True
    record.update(sent=len(sent), dropped=dropped)
    return Fitted(messages=sent, record=record)
