"""Template strings of the MiniOneRec SFT and eval prompts (verbatim data formats).

These strings are *data formats*, not prose: official MiniOneRec checkpoints were trained on them,
so every space, newline and typo is kept exactly as upstream wrote them ("request. \\n\\n",
"### User Input: \\n", SFTData's "\\n \\n" terminator, "recetenly", "palyed", "itemss", "items
items"). See docs/data.md and reference-spec §2.2-2.4. Only plain constants and tiny pure string
builders live here; tokenization is in `sidcore.data.tasks`.
"""

from __future__ import annotations

from collections.abc import Sequence

# Category names as the prompts spell them (upstream's category map; others: underscores -> spaces).
CATEGORY_TEXT = {
    "Industrial_and_Scientific": "industrial and scientific items",
    "Office_Products": "office products",
    "Toys_and_Games": "toys and games",
    "Sports": "sports and outdoors",
    "Books": "books",
}

#: Shared instruction header (note the space after "request.").
HEADER = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request. \n\n### Instruction:\n"
)

#: Per-task instruction sentences appended to `HEADER`.
SID_NEXT_ITEM_INSTRUCTION = "Can you predict the next possible item that the user may expect?\n\n"
ALIGNMENT_INSTRUCTION = "Answer the question about item identification.\n\n"
FUSION_INSTRUCTION = "Can you recommend the next item for the user based on their interaction history?\n\n"
TITLE_TO_SID_INSTRUCTION = (
    "Based on the user's historical interaction with item titles, predict the semantic ID of the next item "
    "they may expect.\n\n"
)
#: SFTData's instruction terminator (newline, space, newline).
TITLE_NEXT_ITEM_TERMINATOR = "\n \n"

#: The 11 SFTData instructions; ``{category}`` is substituted (typos are part of the format).
TITLE_NEXT_ITEM_INSTRUCTS: tuple[str, ...] = (
    "Given a list of {category} the user recetenly enjoy, please write a new {category} that the user "
    "may bought",
    "Considering the {category} that has recently captured the user's interest, kindly create a "
    "compilation of other {category} that the user might have played prior to this.",
    "Based on the user's current gaming preference, please draft a list of potential {category} they "
    "may have experienced beforehand.",
    "Reflecting on the {category} the user has taken pleasure in recently, we request that you "
    "formulate a list of {category} that may have preceded the user's current enjoyment.",
    "In light of the recent gaming enjoyment expressed by the user, please assemble a list of "
    "{category} that could potentially include past titles the user has engaged with.",
    "Taking into account the {category} that has lately provided enjoyment to the user, please put "
    "together an inventory of {category} the user might have explored previously.",
    "Given the user's newfound enjoyment of a particular {category}, would you kindly generate a "
    "roster of other {category} that might resonate with their past gaming experiences?",
    "In response to the user's recent fondness for a specific {category}, we seek your assistance in "
    "listing possible {category} the user may have delighted in earlier.",
    "With respect to the {category} currently enjoyed by the user, please compile a suggestive list of "
    "{category} they may have played in the past.",
    "Bearing in mind the {category} that the user has recently been enthralled by, please construct a "
    "catalog of other {category} that the user potentially partook in beforehand.",
    "In relation to the user's recent entertainment with a given {category}, it would be appreciated "
    "if you could curate a list of {category} that might form part of the user's previous gaming "
    "history.",
)

RESPONSE_MARKER = "### Response:\n"


def body(user_input: str, output: str = "") -> str:
    """The prompt body ``B(input, output)`` (note the space after "User Input:")."""
    return "### User Input: \n" + user_input + "\n\n" + RESPONSE_MARKER + output


def category_text(category: str) -> str:
    """Upstream's category phrase (``Industrial_and_Scientific`` -> "industrial and scientific items").

    Unknown categories fall back to the raw name with underscores turned into spaces.
    """
    return CATEGORY_TEXT.get(category, category.replace("_", " "))


def sid_next_item_input(history_sids: Sequence[str]) -> str:
    """Task 1 input (training wording)."""
    return (
        "The user has interacted with items "
        + ", ".join(history_sids)
        + " in chronological order. Can you predict the next possible item that the user may expect?"
    )


def eval_input(history_sids: Sequence[str]) -> str:
    """Eval prompt input (`EvalSidDataset` wording, different from task 1's)."""
    return (
        "Can you predict the next possible item the user may expect, given the following chronological "
        "interaction history: " + ", ".join(history_sids)
    )


def title2sid_input(title: str) -> str:
    return "Which item has the title: " + title + "?"


def sid2title_input(sid: str) -> str:
    return 'What is the title of item "' + sid + '"?'


def fusion_input(history_sids: Sequence[str]) -> str:
    """Task 3 input."""
    return (
        "The user has sequentially interacted with items "
        + ", ".join(history_sids)
        + ". Can you recommend the next item for him? Tell me the title of the item"
    )


def title_next_item_instruction(index: int, category: str) -> str:
    """Task 4 instruction sentence number ``index`` (0..10) plus its ``"\\n \\n"`` terminator."""
    text = TITLE_NEXT_ITEM_INSTRUCTS[index].replace("{category}", category)
    return text + TITLE_NEXT_ITEM_TERMINATOR


def title_next_item_input(history_titles: Sequence[str], category: str) -> str:
    """Task 4 input: quoted titles joined by comma + TAB ("palyed", "itemss" preserved)."""
    hist = ",\t".join('"' + t + '"' for t in history_titles)
    return "The user has palyed the following " + category + "s before: " + hist


def title_history_to_sid_input(history_titles: Sequence[str], category: str) -> str:
    """Task 5 input ("... items items" preserved)."""
    return (
        "The user has interacted with the following "
        + category
        + " items in chronological order: "
        + ", ".join('"' + t + '"' for t in history_titles)
        + ". Can you predict the next item the user may expect?"
    )
