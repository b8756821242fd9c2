from tests import factories


def test_create_and_get_user(client):
    created = factories.user(client, email="smoke@example.com")
    response = client.get(f"/api/v1/users/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
