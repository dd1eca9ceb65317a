"""The prompts of the LongReward judge (``judge.longreward``, ``longreward.chunk_info``), in English and
Chinese.

Written for this project from the method's description (LongReward §3.2 of the spec): what each dimension
looks at and how the judge answers. Each rating or verdict prompt is a body (what to judge, filled from the
record) followed by a format tail: ``brackets`` asks for the verdict in double square brackets (the
reference format, parsed by ``parse_numeric_score`` / ``parse_support_verdict``); ``digit_probabilities``
asks for a single character whose first-token probabilities give the score (for judges too small to write
the bracket format).
"""

from __future__ import annotations

Lang = str  # "en" or "zh"

HELPFULNESS = {
    "en": (
        "You are reviewing an AI assistant's answer to a user's question. The document the question is "
        "about is not shown; judge the answer as it stands.\n\n"
        "Rate its HELPFULNESS: does it address what was asked, meet the user's need, cover the question "
        "fully at a suitable level of detail, and follow any format the question requests?\n\n"
        "[Question]\n{question}\n\n[Answer]\n{answer}\n\n"
    ),
    "zh": (
        "你正在审阅一个AI助手对用户问题的回答。问题所涉及的文档不会给出，请仅根据回答本身进行评判。\n\n"
        "请评价回答的**有用性**：是否切中所问的问题，是否满足用户的需要，是否完整、详略得当，"
        "以及是否遵守了问题中要求的格式。\n\n"
        "[问题]\n{question}\n\n[回答]\n{answer}\n\n"
    ),
}

LOGICALITY = {
    "en": (
        "You are reviewing an AI assistant's answer to a user's question. The document the question is "
        "about is not shown, and you should not use outside knowledge.\n\n"
        "Rate its LOGICALITY: are its parts consistent with each other, do its conclusions follow from what "
        "it says, and are its reasoning and any calculations correct?\n\n"
        "[Question]\n{question}\n\n[Answer]\n{answer}\n\n"
    ),
    "zh": (
        "你正在审阅一个AI助手对用户问题的回答。问题所涉及的文档不会给出，也不要借助外部知识。\n\n"
        "请评价回答的**逻辑性**：回答各部分之间是否前后一致，结论是否能由其内容推出，"
        "推理和计算是否正确。\n\n"
        "[问题]\n{question}\n\n[回答]\n{answer}\n\n"
    ),
}

COMPLETENESS = {
    "en": (
        "You are reviewing an AI assistant's answer to a question about a long document. Below, for each "
        "part of the document (its position given in percent), is the information in that part that "
        "matters for the question.\n\n"
        "Rate the answer's COMPLETENESS: how many of the important points from all parts does it cover? "
        "Missing points lower the score; points not in the document do not raise it.\n\n"
        "[Question]\n{question}\n\n{info}\n\n[Answer]\n{answer}\n\n"
    ),
    "zh": (
        "你正在审阅一个AI助手对长文档相关问题的回答。下面按文档的各个部分（以百分比表示位置）列出了"
        "该部分中与问题有关的信息。\n\n"
        "请评价回答的**完整性**：回答覆盖了各部分中多少重要信息？遗漏要点应扣分；"
        "文档中没有的内容不能加分。\n\n"
        "[问题]\n{question}\n\n{info}\n\n[回答]\n{answer}\n\n"
    ),
}

INFO_BLOCK = {
    "en": "[Relevant information from {span} of the document]\n{info}",
    "zh": "[文档{span}部分的相关信息]\n{info}",
}

FACTS = {
    "en": (
        "List the factual statements in the answer below: claims about the subject matter that a document "
        "could confirm or contradict. Leave out openings, transitions, summaries of the answer itself and "
        "the writer's own opinions. Rewrite each statement so it stands on its own (replace pronouns by "
        "what they refer to, add a missing subject). Put each one in its own <statement></statement> tags.\n\n"
        "Example of the format:\n<statement>The river is 2,850 km long.</statement>\n"
        "<statement>The river flows into the Black Sea.</statement>\n\n"
        "[Question]\n{question}\n\n[Answer]\n{answer}\n\n[Factual statements]\n"
    ),
    "zh": (
        "请列出下面回答中的事实性陈述，即关于话题本身、可以被文档证实或否定的说法。不要包括开场白、过渡语、"
        "对回答本身的总结以及作者的个人观点。每条陈述都应能独立理解（把代词换成所指对象，补全缺失的主语）。"
        "每条陈述单独放在<statement></statement>标签中。\n\n"
        "格式示例：\n<statement>这条河全长2850公里。</statement>\n<statement>这条河注入黑海。</statement>\n\n"
        "[问题]\n{question}\n\n[回答]\n{answer}\n\n[事实性陈述]\n"
    ),
}

SUPPORT = {
    "en": (
        "Below are excerpts from a document and a statement. Decide whether the excerpts support the "
        "statement: fully (everything it says is backed by the excerpts), partially (some of it is backed, "
        "some is not), or not at all.\n\n{evidence}\n\n[Statement]\n{statement}\n\n"
    ),
    "zh": (
        "下面给出文档中的若干片段和一条陈述。请判断这些片段是否支持该陈述：完全支持（陈述的所有内容都能在片段中"
        "找到依据）、部分支持（部分内容有依据，部分没有）或不支持。\n\n{evidence}\n\n[陈述]\n{statement}\n\n"
    ),
}

EVIDENCE_BLOCK = {"en": "[Excerpt {n}]\n{chunk}", "zh": "[片段{n}]\n{chunk}"}

CHUNK_INFO = {
    "en": (
        "Below is one part of a long document and a question about the whole document. List every piece "
        "of information in this part that helps answer the question, as a numbered list (1. ..., 2. ...). "
        "If this part holds nothing relevant, reply only: No relevant information\n\n"
        "[Document part]\n{chunk}\n\n[Question]\n{question}\n\n[Relevant information]\n"
    ),
    "zh": (
        "下面是一篇长文档中的一部分，以及一个关于整篇文档的问题。请以编号列表（1. ……，2. ……）列出这一部分中"
        "所有有助于回答该问题的信息。如果这一部分没有相关内容，只回复：无相关信息\n\n"
        "[文档片段]\n{chunk}\n\n[问题]\n{question}\n\n[相关信息]\n"
    ),
}

RATING_TAIL = {
    "brackets": {
        "en": "Explain your assessment briefly, then give a score from 0 (worst) to 10 (best) in double "
              "square brackets on the last line, for example: [[6]]",
        "zh": "请先简要说明理由，然后在最后一行用双方括号给出0（最差）到10（最好）的分数，例如：[[6]]",
    },
    "digit_probabilities": {  # ends on the score's label, so that even a small judge's next token is a digit
        "en": "Give a score from 0 (worst) to 9 (best). Score (one digit):",
        "zh": "请给出0（最差）到9（最好）的分数。分数（一个数字）：",
    },
}

SUPPORT_TAIL = {
    "brackets": {
        "en": "Explain briefly, then end with exactly one of [[Fully supported]], [[Partially supported]] "
              "or [[No support]].",
        "zh": "请简要说明理由，最后以 [[Fully supported]]、[[Partially supported]] 或 [[No support]] "
              "之一结尾。",
    },
    "digit_probabilities": {
        "en": "Reply with one letter and nothing else: A if fully supported, B if partially supported, "
              "C if not supported.",
        "zh": "只回复一个字母，不要写其他内容：完全支持回复A，部分支持回复B，不支持回复C。",
    },
}

NO_INFO = {"en": "No relevant information", "zh": "无相关信息"}


def all_prompts() -> dict[str, str]:
    """Every template by a stable name (for fingerprints and the lockfile)."""
    out: dict[str, str] = {}
    for name, table in (("helpfulness", HELPFULNESS), ("logicality", LOGICALITY),
                        ("completeness", COMPLETENESS), ("info_block", INFO_BLOCK), ("facts", FACTS),
                        ("support", SUPPORT), ("evidence_block", EVIDENCE_BLOCK)):
        for lang, text in table.items():
            out[f"{name}_{lang}"] = text
    for name, table in (("rating_tail", RATING_TAIL), ("support_tail", SUPPORT_TAIL)):
        for mode, by_lang in table.items():
            for lang, text in by_lang.items():
                out[f"{name}_{mode}_{lang}"] = text
    return out


def chunk_info_prompts() -> dict[str, str]:
    return {f"chunk_info_{lang}": text for lang, text in CHUNK_INFO.items()}
