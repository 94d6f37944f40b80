"""`GET /v1/models`: what the org may call."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import client


def test_it_lists_scripted_models_for_every_org(alice_client):
    ids = [m.id for m in alice_client.models.list()]
    assert "scripted/default" in ids and "scripted/alt" in ids


def test_it_lists_each_configured_providers_models(alice_client, upstream):
    ids = [m.id for m in alice_client.models.list()]
    assert "openai/fake" in ids and "hosted_vllm/fake" in ids
    assert "openai/gpt-4o-mini" in ids  # from litellm's catalogue


def test_it_honours_the_orgs_allowed_models(alice, jetty, upstream):
    alice.org.allowed_models = ["scripted/*"]
    alice.org.save()
    ids = {m.id for m in client(jetty, alice.token).models.list()}
    assert ids == {"scripted/default", "scripted/alt"}


def test_it_retrieves_one_model_and_404s_unknown_ones(alice_client):
    assert alice_client.models.retrieve("scripted/default").owned_by == "scripted"
    with pytest.raises(openai.NotFoundError):
        alice_client.models.retrieve("nope/nothing")


def test_it_rejects_a_bad_key(jetty, alice):
    with pytest.raises(openai.AuthenticationError):
        client(jetty, "jty_wrong").models.list()
