"""kopf's settings as the operator runs it: no diff base is built per watch event, which is safe only while
no handler reads one."""

from __future__ import annotations

import kopf

from doris_operator import handlers
from doris_operator.operator import NoDiffBase, _settings


def test_no_handler_reads_the_diff_base_the_operator_does_not_build() -> None:
    """create/update/resume/delete (changing) handlers and daemons/timers (spawning) read kopf's diff
    base; the operator has only indexes and on.event handlers.  Adding one of the former must come with
    the diff base back."""
    registry = handlers.registry
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._spawning.get_all_handlers()) == []
    assert len(list(registry._watching.get_all_handlers())) >= 10  # on.event: the handlers that run


def test_the_diff_base_is_empty_and_no_copy_of_the_object() -> None:
    settings = _settings()
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, NoDiffBase)
    body = kopf.Body({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"a": [1, 2]}})
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None
    assert kopf.AnnotationsDiffBaseStorage().build(body=body) == {"spec": {"a": [1, 2]}}  # what it skips
