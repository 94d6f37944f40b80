"""Make a real Inspect AI eval log offline: ``python -m tests.support.inspect_eval LOG_DIR`` prints its path.

A task of two samples whose solver offers a tool (``add``) to ``mockllm/model``, scripted to call it once and then
answer (right for the first sample, wrong for the second), scored by ``includes()`` and by ``model_graded_qa``
with a second scripted model as the grader. Token usage is given with each output (mockllm would otherwise count
tokens with a tokenizer it downloads).
"""

from __future__ import annotations

import sys

from inspect_ai import Task, eval, task
from inspect_ai.dataset import Sample
from inspect_ai.model import ModelOutput, ModelUsage, get_model
from inspect_ai.scorer import includes, model_graded_qa
from inspect_ai.solver import generate, use_tools
from inspect_ai.tool import tool


@tool
def add():
    async def execute(x: int, y: int) -> int:
        """Add two whole numbers.

        Args:
            x: the first number
            y: the second number
        """
        return x + y

    return execute


def used(output: ModelOutput, prompt: int, completion: int) -> ModelOutput:
    output.usage = ModelUsage(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion)
    return output


@task
def addition() -> Task:
    return Task(
        dataset=[
            Sample(id="one", input="What is 1 + 2?", target="3"),
            Sample(id="two", input="What is 2 + 2?", target="4"),
        ],
        solver=[use_tools(add()), generate()],
        scorer=[
            includes(),
            model_graded_qa(
                model=get_model(
                    "mockllm/grader",
                    custom_outputs=[
                        used(ModelOutput.from_content("mockllm/grader", "It is right. GRADE: C"), 50, 8),
                        used(ModelOutput.from_content("mockllm/grader", "The sum is wrong. GRADE: I"), 50, 9),
                    ],
                )
            ),
        ],
    )


def main(log_dir: str) -> None:
    model = get_model(
        "mockllm/model",
        custom_outputs=[
            used(ModelOutput.for_tool_call("mockllm/model", "add", {"x": 1, "y": 2}), 20, 5),
            used(ModelOutput.from_content("mockllm/model", "The answer is 3"), 30, 6),
            used(ModelOutput.for_tool_call("mockllm/model", "add", {"x": 2, "y": 2}), 21, 5),
            used(ModelOutput.from_content("mockllm/model", "The answer is 5"), 31, 6),
        ],
    )
    [log] = eval(addition(), model=model, log_dir=log_dir, display="none", max_samples=1)
    assert log.status == "success", log.error
    print(log.location)


if __name__ == "__main__":
    main(sys.argv[1])
