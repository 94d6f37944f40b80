"""A run as OpenTelemetry spans following the GenAI semantic conventions, sent over OTLP/HTTP."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import error_attributes
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from orgs import outbound

from ..conversations import Message
from ..models import Event, Run, RunKind, RunStatus
from ..schemas import read_model_call
from .jetty import dumps, events_of

# litellm's provider names, as the GenAI conventions name them (others pass through as they are).
PROVIDERS = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "vertex_ai_beta": "gcp.vertex_ai",
    "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock",
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "watsonx": "ibm.watsonx.ai",
}
REQUEST_ATTRIBUTES = {
    "temperature": gen_ai.GEN_AI_REQUEST_TEMPERATURE,
    "top_p": gen_ai.GEN_AI_REQUEST_TOP_P,
    "top_k": gen_ai.GEN_AI_REQUEST_TOP_K,
    "max_tokens": gen_ai.GEN_AI_REQUEST_MAX_TOKENS,
    "max_completion_tokens": gen_ai.GEN_AI_REQUEST_MAX_TOKENS,
    "max_output_tokens": gen_ai.GEN_AI_REQUEST_MAX_TOKENS,
    "seed": gen_ai.GEN_AI_REQUEST_SEED,
    "frequency_penalty": gen_ai.GEN_AI_REQUEST_FREQUENCY_PENALTY,
    "presence_penalty": gen_ai.GEN_AI_REQUEST_PRESENCE_PENALTY,
    "n": gen_ai.GEN_AI_REQUEST_CHOICE_COUNT,
    "stream": gen_ai.GEN_AI_REQUEST_STREAM,
}


def provider_name(provider: str, model: str = "") -> str:
    name = provider or (model.split("/", 1)[0] if "/" in model else "")
    return PROVIDERS.get(name, name or "unknown")


class RunIds(IdGenerator):
    """Ids derived from the run: exporting a run again gives the same trace and spans (backends de-duplicate)."""

    def __init__(self, run_id: str) -> None:
        self.seed = hashlib.sha256(run_id.encode()).digest()
        self.count = 0

    def generate_trace_id(self) -> int:
        return int.from_bytes(self.seed[:16], "big") or 1

    def generate_span_id(self) -> int:
        self.count += 1
        digest = hashlib.sha256(self.seed + self.count.to_bytes(8, "big")).digest()
        return int.from_bytes(digest[:8], "big") or 1


def trace_id_of(run: Run) -> str:
    return f"{RunIds(run.public_id).generate_trace_id():032x}"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def nanoseconds(value: datetime | str | None) -> int | None:
    """Nanoseconds since the epoch, exactly (a float of them would be off by a microsecond or so)."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _attr(value: Any) -> Any:
    """A value OpenTelemetry accepts as an attribute: scalars as they are, anything else as JSON."""
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    return dumps(value)


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: _attr(v) for k, v in attributes.items() if v is not None and v != ""}


def _genai_message(message: Message, finish_reason: str | None = None) -> dict[str, Any]:
    """A message in the GenAI conventions' shape (``{role, parts: [{type, …}]}``)."""
    parts: list[dict[str, Any]] = []
    if message.thinking:
        parts.append({"type": "reasoning", "content": message.thinking})
    if message.role == "tool":
        parts.append({"type": "tool_call_response", "id": message.tool_call_id, "response": message.text})
    elif message.text:
        parts.append({"type": "text", "content": message.text})
    for call in message.tool_calls:
        parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments})
    out: dict[str, Any] = {"role": message.role, "parts": parts}
    if finish_reason:
        out["finish_reason"] = finish_reason
    return out


def _model_call_attributes(run: Run, event: Event, include_content: bool) -> dict[str, Any]:
    call = read_model_call(event.payload)
    request, response = call.request or {}, call.response or {}
    provider = provider_name(event.provider, event.model or run.model)
    attributes: dict[str, Any] = {
        gen_ai.GEN_AI_OPERATION_NAME: gen_ai.GenAiOperationNameValues.CHAT.value,
        gen_ai.GEN_AI_PROVIDER_NAME: provider,
        gen_ai.GEN_AI_SYSTEM: provider,
        gen_ai.GEN_AI_REQUEST_MODEL: event.model or request.get("model") or run.model,
        gen_ai.GEN_AI_RESPONSE_MODEL: call.upstream_model or response.get("model") or response.get("modelVersion"),
        gen_ai.GEN_AI_RESPONSE_ID: response.get("id") or response.get("responseId"),
        gen_ai.GEN_AI_USAGE_INPUT_TOKENS: event.prompt_tokens,
        gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: event.completion_tokens,
        gen_ai.GEN_AI_CONVERSATION_ID: run.public_id,
        "jetty.event.seq": event.seq,
        "jetty.cost_usd": float(event.cost_usd) if event.cost_usd is not None else None,
        "jetty.latency_ms": event.latency_ms,
        "jetty.wire": call.wire,
    }
    if call.finish_reason:
        attributes[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS] = [call.finish_reason]
    for key, name in REQUEST_ATTRIBUTES.items():
        if isinstance(request.get(key), (int, float, bool)):
            attributes[name] = request[key]
    if isinstance(request.get("stop"), (str, list)):
        stop = request["stop"]
        attributes[gen_ai.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop] if isinstance(stop, str) else [str(s) for s in stop]
    if include_content:
        attributes[gen_ai.GEN_AI_INPUT_MESSAGES] = [_genai_message(m) for m in call.messages()] or None
        answer = call.answer()
        output = None if answer.empty else [_genai_message(answer, call.finish_reason)]
        attributes[gen_ai.GEN_AI_OUTPUT_MESSAGES] = output
        attributes[gen_ai.GEN_AI_TOOL_DEFINITIONS] = request.get("tools")
    if call.error or (call.status_code or 200) >= 400:
        attributes[error_attributes.ERROR_TYPE] = str(call.status_code or "error")
    return _clean(attributes)


def _root(run: Run) -> tuple[str, SpanKind, dict[str, Any]]:
    provider = provider_name(run.provider, run.model)
    common = {
        gen_ai.GEN_AI_CONVERSATION_ID: run.public_id,
        gen_ai.GEN_AI_REQUEST_MODEL: run.model,
        gen_ai.GEN_AI_USAGE_INPUT_TOKENS: run.prompt_tokens,
        gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: run.completion_tokens,
        "jetty.run.id": run.public_id,
        "jetty.run.task": run.task,
        "jetty.run.kind": run.kind,
        "jetty.run.status": run.status,
        "jetty.run.collection": run.collection.name if run.collection_id and run.collection else None,
        "jetty.cost_usd": float(run.cost_usd),
        "jetty.run.error_code": run.error_code or None,
        "jetty.contract.passed": None if run.contract is None else bool(run.contract.get("passed")),
    }
    if run.kind == RunKind.AGENT:
        name = f"invoke_agent {run.agent}" if run.agent else "invoke_agent"
        attributes = {
            gen_ai.GEN_AI_OPERATION_NAME: gen_ai.GenAiOperationNameValues.INVOKE_AGENT.value,
            gen_ai.GEN_AI_PROVIDER_NAME: provider,
            gen_ai.GEN_AI_SYSTEM: provider,
            gen_ai.GEN_AI_AGENT_NAME: run.agent,
            gen_ai.GEN_AI_AGENT_ID: run.public_id,
            **common,
        }
        return name, SpanKind.INTERNAL, attributes
    if run.kind == RunKind.WORKFLOW:
        attributes = {
            gen_ai.GEN_AI_OPERATION_NAME: gen_ai.GenAiOperationNameValues.INVOKE_WORKFLOW.value,
            gen_ai.GEN_AI_WORKFLOW_NAME: run.task,
            **common,
        }
        return f"invoke_workflow {run.task}", SpanKind.INTERNAL, attributes
    attributes = {
        gen_ai.GEN_AI_OPERATION_NAME: gen_ai.GenAiOperationNameValues.CHAT.value,
        gen_ai.GEN_AI_PROVIDER_NAME: provider,
        gen_ai.GEN_AI_SYSTEM: provider,
        **common,
    }
    return f"chat {run.model}", SpanKind.CLIENT, attributes


@dataclass
class _Open:
    span: Span
    end_ns: int


def run_to_otel_spans(run: Run, *, include_content: bool = False) -> list[ReadableSpan]:
    """The run as finished OpenTelemetry spans following the GenAI semantic conventions.

    Message contents, tool arguments and results are opt-in in the conventions (they may be sensitive): they are
    attached only with ``include_content``.
    """
    collected = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.JETTY_OTLP_SERVICE_NAME, "jetty.org": run.org.public_id}),
        id_generator=RunIds(run.public_id),
    )
    provider.add_span_processor(SimpleSpanProcessor(collected))
    tracer = provider.get_tracer("jetty.trajectories")

    start = nanoseconds(run.started_at or run.created) or 0
    last = start
    name, kind, attributes = _root(run)
    root = tracer.start_span(name, kind=kind, start_time=start, attributes=_clean(attributes))
    steps: dict[str, _Open] = {}
    tools: dict[str, _Open] = {}
    chat_root_used = False

    def parent_of(event: Event) -> Span:
        step = steps.get(event.span)
        return step.span if step is not None else root

    for event in events_of(run):
        ts = nanoseconds(event.ts) or start
        last = max(last, ts)
        payload = event.payload if isinstance(event.payload, dict) else {}
        context = trace.set_span_in_context(parent_of(event))
        if event.kind == "step.start" and event.span:
            if event.span in steps:
                steps.pop(event.span).span.end(end_time=ts)
            step_attributes = _clean({"jetty.step.name": event.span, "jetty.step.type": payload.get("type")})
            span = tracer.start_span(
                event.span, context=trace.set_span_in_context(root), start_time=ts, attributes=step_attributes
            )
            steps[event.span] = _Open(span, ts)
        elif event.kind == "step.end" and event.span in steps:
            step = steps.pop(event.span)
            if payload.get("status") not in (None, "succeeded"):
                step.span.set_status(Status(StatusCode.ERROR, str(payload.get("error") or payload.get("status"))))
            step.span.end(end_time=ts)
        elif event.kind == "model.call":
            end = ts + (event.latency_ms or 0) * 1_000_000
            last = max(last, end)
            call_attributes = _model_call_attributes(run, event, include_content)
            if run.kind == RunKind.CHAT and not chat_root_used:
                chat_root_used = True  # a passthrough run is this one call: its root span carries it
                root.set_attributes(call_attributes)
                continue
            span = tracer.start_span(
                f"chat {call_attributes.get(gen_ai.GEN_AI_REQUEST_MODEL, '')}".strip(),
                context=context,
                kind=SpanKind.CLIENT,
                start_time=ts,
                attributes=call_attributes,
            )
            if error_attributes.ERROR_TYPE in call_attributes:
                span.set_status(Status(StatusCode.ERROR, str(payload.get("error") or "")))
            span.end(end_time=end)
        elif event.kind == "tool.call":
            tool = str(payload.get("name") or "")
            tool_attributes = {
                gen_ai.GEN_AI_OPERATION_NAME: gen_ai.GenAiOperationNameValues.EXECUTE_TOOL.value,
                gen_ai.GEN_AI_TOOL_NAME: tool,
                gen_ai.GEN_AI_TOOL_CALL_ID: payload.get("id"),
                gen_ai.GEN_AI_TOOL_TYPE: "function",
                "jetty.event.seq": event.seq,
            }
            if include_content:
                tool_attributes[gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS] = payload.get("arguments")
            span = tracer.start_span(
                f"execute_tool {tool}".strip(), context=context, start_time=ts, attributes=_clean(tool_attributes)
            )
            tools[str(payload.get("id") or f"seq-{event.seq}")] = _Open(span, ts)
        elif event.kind == "tool.result" and str(payload.get("id") or "") in tools:
            call = tools.pop(str(payload["id"]))
            if include_content:
                call.span.set_attribute(gen_ai.GEN_AI_TOOL_CALL_RESULT, _attr(payload.get("output")))
            if payload.get("ok") is False:
                call.span.set_attribute(error_attributes.ERROR_TYPE, "tool_error")
                call.span.set_status(Status(StatusCode.ERROR, "the tool reported an error"))
            call.span.end(end_time=ts)
        else:
            event_attributes: dict[str, Any] = {"jetty.event.seq": event.seq, "jetty.event.span": event.span}
            if include_content or event.kind in ("run.state", "error", "file.change", "contract.check"):
                event_attributes["jetty.event.payload"] = payload
            parent_of(event).add_event(event.kind, attributes=_clean(event_attributes), timestamp=ts)

    end = nanoseconds(run.finished_at) or last
    for still_open in [*tools.values(), *steps.values()]:
        still_open.span.end(end_time=max(end, still_open.end_ns))
    if run.status in (RunStatus.FAILED, RunStatus.TIMED_OUT, RunStatus.CANCELLED):
        root.set_attribute(error_attributes.ERROR_TYPE, run.error_kind or run.status)
        root.set_status(Status(StatusCode.ERROR, run.error[:500] or run.status))
    root.end(end_time=max(end, start))
    provider.shutdown()
    return list(collected.get_finished_spans())


class OtlpExportFailed(Exception):
    pass


@dataclass
class OtlpExport:
    endpoint: str
    spans: int
    trace_id: str


def export_run_otlp(
    run: Run,
    endpoint: str,
    *,
    headers: dict[str, str] | None = None,
    include_content: bool = False,
    timeout: float | None = None,
    trusted: bool = False,
) -> OtlpExport:
    """Send the run's spans to an OTLP/HTTP traces endpoint (``http://collector:4318/v1/traces``). Unless the
    endpoint is the operator's own (``trusted``), the request goes through the outbound policy; a refusal raises
    OutboundForbidden."""
    spans = run_to_otel_spans(run, include_content=include_content)
    session, adapter = (None, None) if trusted else outbound.requests_session()
    exporter = OTLPSpanExporter(
        endpoint=endpoint, headers=headers or {}, timeout=timeout or settings.JETTY_OTLP_TIMEOUT_S, session=session
    )
    try:
        result = exporter.export(spans)
    finally:
        exporter.shutdown()
    if adapter is not None and adapter.refused is not None:
        raise adapter.refused  # the exporter swallows every exception; the reason is kept by the adapter
    if result != SpanExportResult.SUCCESS:
        raise OtlpExportFailed(f"the OTLP endpoint {endpoint} did not accept the spans")
    return OtlpExport(endpoint=endpoint, spans=len(spans), trace_id=trace_id_of(run))
