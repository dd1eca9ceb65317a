"""The prompts of the LongBench-Cite judge (``judge.longbench_cite``): citation support, need for a citation
and relevance (LongCite §1.4), and the correctness ratings per dataset family. Templates of
``components.templates`` (``{field}``)."""

SUPPORT_PROMPT = """You are checking whether a statement from an AI assistant's answer is backed by the text it cites.

Read the user's question, the statement and the cited snippets, then rate how well the snippets support the statement:
- [[Fully supported]]: everything the statement claims can be found in the snippets.
- [[Partially supported]]: some of what the statement claims is in the snippets, but not all of it.
- [[No support]]: the snippets do not back the statement, or are unrelated to it.

Give the rating first, exactly in the form [[rating]], then write "Analysis:" and a short reason.

<question>
{question}
</question>

<statement>
{statement}
</statement>

<snippet>
{snippets}
</snippet>
"""

NEED_CITATION_PROMPT = """You are checking whether a sentence of an AI assistant's answer needs a citation.

A sentence needs a citation when it states facts or details that should come from the source document. A sentence that only opens or closes the answer, links two parts, sums up, or gives the assistant's own reasoning does not.

Read the user's question, the whole answer and the sentence, then reply [[Yes]] if the sentence needs a citation and [[No]] if it does not. Give the verdict first, exactly in the form [[verdict]], then write "Analysis:" and a short reason.

<question>
{question}
</question>

<response>
{response}
</response>

<sentence>
{sentence}
</sentence>
"""

RELEVANCE_PROMPT = """You are checking whether a snippet cited by an AI assistant has anything to do with the statement it is cited for.

Read the user's question, the statement and the snippet. Reply [[Relevant]] if the snippet contains information that backs at least part of the statement, and [[Irrelevant]] if it does not. Give the verdict first, exactly in the form [[verdict]], then write "Analysis:" and a short reason.

<question>
{question}
</question>

<statement>
{statement}
</statement>

<snippet>
{snippet}
</snippet>
"""

JUDGE_SYSTEM = "You are an expert at judging the quality of written answers."

CORRECT_QA_PROMPT = """Compare an AI assistant's answer to a question with the reference answer, which is correct, and rate the answer:
- [[1]]: wrong, or does not answer the question.
- [[2]]: partly correct, or correct but missing important parts.
- [[3]]: correct and complete.

Give the rating first, exactly in the form [[rating]], then a short reason.

<question>
{question}
</question>

<reference>
{reference}
</reference>

<response>
{prediction}
</response>
"""

CORRECT_SUMMARY_PROMPT = """Compare an AI assistant's summary of a report with the reference summary, and rate how well it covers the report's main points correctly, from 1 to 5:
- [[1]]: misses almost all main points or gets them wrong.
- [[2]]: covers a few main points.
- [[3]]: covers about half of the main points.
- [[4]]: covers most main points with few errors.
- [[5]]: covers all main points correctly.

Give the rating first, exactly in the form [[rating]], then a short reason.

<question>
{question}
</question>

<reference>
{reference}
</reference>

<response>
{prediction}
</response>
"""

CORRECT_CHAT_PROMPT = """[Instructions]
Rate how good an AI assistant's answer to the user's question is. Judge correctness first, then helpfulness, accuracy and relevance. A reference answer, which is correct, is given for comparison; take points off for anything wrong, and for irrelevant content the answer adds. Example answers with their ratings show the scale. Rate with an integer from 1 to 10 in the form "[[rating]]", for example "Rating: [[6]]".

[Question]
{question}

[Reference answer]
{reference}

{examples}

[Answer to rate]
{prediction}

Rating: """

CHAT_EXAMPLE = "[Example answer {n}]\n{answer}\n\nRating: [[{score}]]"
