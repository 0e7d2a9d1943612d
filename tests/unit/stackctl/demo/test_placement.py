from stackctl.demo.placement import pool_of


def test_pool_is_the_worker_hostname_prefix():
    assert pool_of("heavy-2@vm") == "heavy"
    assert pool_of("light-1@host.example.com") == "light"
    assert pool_of(None) is None
