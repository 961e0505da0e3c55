from tests.conftest import error_of


def test_me_and_errors(api, tenants):
    merchant = tenants["merchant"]
    response = api.get("/v1/me", key=merchant.key)
    assert response.status_code == 200
    assert response.json()["participant"]["id"] == merchant.id
    response = api.get("/v1/me")
    assert response.status_code == 401
    assert error_of(response)["code"] == "api_key_missing"
