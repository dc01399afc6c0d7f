"""Random JSON at POST /v1/hints: never a 5xx, always the one error shape."""
from __future__ import annotations

import json
from typing import Any

from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.builders import hint

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
# Text near the request grammar reaches nodespec more often than arbitrary unicode.
resource_text = st.text(alphabet="nodesplacetmwgkb=:+,#%0123456789-", max_size=40)
field_values = json_values | resource_text | st.lists(resource_text | json_values, max_size=5)
hint_like = st.fixed_dictionaries(
    {}, optional={name: field_values for name in hint()} | {"extra": json_values})
# A valid hint with one field replaced: most of these reach nodespec.
one_field_off = st.builds(lambda name, value: hint(**{name: value}),
                          st.sampled_from(sorted(hint())), field_values)


@settings(max_examples=150, deadline=None,
          # The client only posts; hints piling up in the store do not change its answers.
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=json_values | hint_like | one_field_off)
def test_random_json_never_causes_a_server_error(client: FlaskClient, body: Any) -> None:
    response = client.post("/v1/hints", data=json.dumps(body), content_type="application/json")

    assert response.status_code < 500, response.data
    answer = response.get_json()
    if response.status_code == 202:
        assert isinstance(answer["id"], int)
    else:
        assert 400 <= response.status_code < 500
        assert set(answer) == {"error"}
        assert set(answer["error"]) == {"code", "message"}
        assert all(isinstance(value, str) for value in answer["error"].values())
