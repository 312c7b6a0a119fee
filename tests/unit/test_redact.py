"""The one way an error becomes text (controllers/structs/redact.py): no value of an object's data leaves."""

from __future__ import annotations

import pytest
import yaml

from controllers.kube import retry
from controllers.structs import redact

VALUE = "s3cr3t-Value-7f2b"


def api_error(status: int, message: str, **body: object) -> retry.ApiError:
    return retry.ApiError(status=status, body={"message": message, "reason": "Invalid", **body})


def test_an_apiserver_answer_without_the_request_object_is_its_status_only() -> None:
    assert redact.describe(api_error(422, f"value {VALUE}")) == "422 Invalid"
    assert retry.describe is redact.describe  # one function, reachable from kube/ and below it


def test_the_message_is_kept_for_an_object_without_data_and_withheld_for_one_with_it() -> None:
    error = api_error(
        422,
        f'Secret "s" is invalid: metadata.labels: Invalid value: "{VALUE}"',
        details={"causes": [{"field": "metadata.labels", "message": f"Invalid value: {VALUE}"}]},
    )
    service = {"apiVersion": "v1", "kind": "Service", "spec": {"ports": []}}
    assert VALUE in redact.describe(error, sent=service)  # nothing to hide: the message helps
    for field in redact.VALUE_FIELDS:
        shown = redact.describe(error, sent={"kind": "Anything", field: {"k": "v"}})
        assert VALUE not in shown
        assert (
            shown
            == "422 Invalid at metadata.labels (the apiserver's message is withheld: the object holds data values)"
        )
    assert redact.describe(error, sent={"kind": "Secret", "data": {}}) != redact.describe(
        error
    )  # empty data: kept


def test_a_yaml_error_says_where_and_what_without_the_line() -> None:
    with pytest.raises(yaml.YAMLError) as error:
        yaml.safe_load(f"a: 1\npassword: '{VALUE}\n")
    assert VALUE in str(error.value)  # PyYAML itself quotes the line
    shown = redact.describe(error.value)
    assert VALUE not in shown
    assert shown == "line 3, column 1: while scanning a quoted scalar, found unexpected end of stream"


def test_quoted_parts_of_a_parser_message_are_withheld_but_tokens_and_characters() -> None:
    said = "expected ',' or ']', but got '<block end>' near 'some text' and \"more\""
    assert redact.withhold_quoted(said) == "expected ',' or ']', but got '<block end>' near '…' and '…'"


def test_other_errors() -> None:
    class Mine(redact.Redacted):
        pass

    assert redact.describe(Mine("built from names")) == "built from names"
    assert redact.describe(FileNotFoundError(2, "No such file or directory", "/x")) == (
        "FileNotFoundError: No such file or directory"
    )
    assert redact.describe(KeyError(VALUE)) == "KeyError"
