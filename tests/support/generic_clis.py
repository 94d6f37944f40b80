"""CLIs for the generic adapter's tests, configured the way an operator would (``JETTY_GENERIC_AGENTS``)."""

from __future__ import annotations

ECHO_CLI = r"""
import json, os, sys, urllib.request
prompt = open(sys.argv[1]).read()
request = urllib.request.Request(
    os.environ["OPENAI_BASE_URL"] + "/chat/completions",
    data=json.dumps({"model": os.environ["JETTY_MODEL"], "messages": [{"role": "user", "content": "hi"}]}).encode(),
    headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"], "Content-Type": "application/json"},
)
answer = json.load(urllib.request.urlopen(request))["choices"][0]["message"]["content"]
print(json.dumps({"type": "message", "text": answer}), flush=True)
os.makedirs("/app/results", exist_ok=True)
open("/app/results/answer.txt", "w").write(answer + "\n")
open("/app/results/prompt_has_runbook.txt", "w").write(str("<runbook>" in prompt))
print(json.dumps({"type": "result", "text": "wrote answer.txt"}), flush=True)
"""

GENERIC_CLIS = {
    "echo-cli": {
        "command": ["python3", "-c", ECHO_CLI, "{prompt_file}"],
        "output": "jsonl",
        "kinds": {"message": "agent.message"},
        "final_type": "result",
        "final_field": "text",
        "version": "1.0",
    },
    "crash-cli": {
        "command": ["bash", "-c", "echo working; echo 'fatal: the CLI fell over' >&2; kill -SEGV $$"],
        "output": "text",
    },
    "silent-cli": {"command": ["bash", "-c", 'echo \'{"type": "progress"}\''], "output": "jsonl"},
    "hang-cli": {"command": ["sleep", "600"], "output": "jsonl"},
}
