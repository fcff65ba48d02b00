#!/usr/bin/env python3
"""Smoke test with hvac, the Python Vault client, against a running Bulwark.

    bulwark server -dev -dev-root-token-id=root &
    pip install hvac && VAULT_ADDR=http://127.0.0.1:8200 VAULT_TOKEN=root python3 tests/compat/hvac_smoke.py
"""
import hvac, traceback
import os, sys
URL = os.environ.get("VAULT_ADDR", "http://127.0.0.1:8200")
c = hvac.Client(url=URL, token=os.environ.get("VAULT_TOKEN", "root"))
failed = []
def step(name, f):
    try:
        r = f()
        print("OK  ", name, "->", (str(r)[:150] if r is not None else None))
    except Exception as e:
        failed.append(name)
        print("FAIL", name, type(e).__name__, str(e)[:200])
step("is_authenticated", lambda: c.is_authenticated())
step("seal status", lambda: c.sys.read_seal_status())
step("health", lambda: c.sys.read_health_status(method="GET"))
step("kv2 create", lambda: c.secrets.kv.v2.create_or_update_secret(path="app", secret={"pw": "x"}))
step("kv2 read", lambda: c.secrets.kv.v2.read_secret_version(path="app", raise_on_deleted_version=True)["data"]["data"])
step("kv2 metadata", lambda: c.secrets.kv.v2.read_secret_metadata(path="app")["data"]["current_version"])
step("kv2 list", lambda: c.secrets.kv.v2.list_secrets(path="")["data"]["keys"])
step("kv2 patch", lambda: c.secrets.kv.v2.patch(path="app", secret={"user": "u"}))
step("kv2 delete latest", lambda: c.secrets.kv.v2.delete_latest_version_of_secret(path="app"))
step("kv2 undelete", lambda: c.secrets.kv.v2.undelete_secret_versions(path="app", versions=[2]))
step("kv2 destroy", lambda: c.secrets.kv.v2.destroy_secret_versions(path="app", versions=[1]))
step("enable kv1", lambda: c.sys.enable_secrets_engine(backend_type="kv", path="kv", options={"version": "1"}))
step("kv1 write", lambda: c.secrets.kv.v1.create_or_update_secret(path="a", secret={"k": "v"}, mount_point="kv"))
step("kv1 read", lambda: c.secrets.kv.v1.read_secret(path="a", mount_point="kv")["data"])
step("list mounts", lambda: list(c.sys.list_mounted_secrets_engines()["data"].keys()))
step("tune", lambda: c.sys.tune_mount_configuration(path="kv", default_lease_ttl="1h"))
step("read tune", lambda: c.sys.read_mount_configuration(path="kv"))
step("policy create", lambda: c.sys.create_or_update_policy(name="p", policy='path "secret/*" { capabilities = ["read"] }'))
step("policy read", lambda: c.sys.read_policy(name="p")["data"]["rules"])
step("policy list", lambda: c.sys.list_policies()["data"]["policies"])
step("acl policy read", lambda: c.sys.read_acl_policy(name="p")["data"]["policy"])
step("token create", lambda: c.auth.token.create(policies=["p"], ttl="1h")["auth"]["client_token"][:4])
step("lookup self", lambda: c.auth.token.lookup_self()["data"]["policies"])
step("token list accessors", lambda: len(c.auth.token.list_accessors()["data"]["keys"]))
step("capabilities", lambda: c.sys.get_capabilities(paths=["secret/data/x"]))
step("audit enable", lambda: c.sys.enable_audit_device(device_type="file", options={"file_path": "/tmp/bulwark-hvac-audit.log"}))
step("audit list", lambda: c.sys.list_enabled_audit_devices())
step("audit hash", lambda: c.sys.calculate_hash(path="file", input_to_hash="x"))
step("cubbyhole write", lambda: c.write("cubbyhole/x", k="v"))
step("cubbyhole read", lambda: c.read("cubbyhole/x")["data"])
step("disable kv", lambda: c.sys.disable_secrets_engine(path="kv"))
step("renew self (child)", lambda: hvac.Client(url=URL, token=c.auth.token.create(policies=["p"], ttl="1h")["auth"]["client_token"]).auth.token.renew_self(increment="30m")["auth"]["lease_duration"])

# Auth methods and response wrapping.
step("enable userpass", lambda: c.sys.enable_auth_method(method_type="userpass"))
step("list auth methods", lambda: sorted(c.sys.list_auth_methods()["data"].keys()))
step("userpass create user", lambda: c.auth.userpass.create_or_update_user(username="alice", password="Password123!", policies=["p"]))
step("userpass read user", lambda: c.auth.userpass.read_user(username="alice")["data"]["token_policies"])
step("userpass list users", lambda: c.auth.userpass.list_user()["data"]["keys"])
step("userpass login", lambda: hvac.Client(url=URL).auth.userpass.login(username="alice", password="Password123!")["auth"]["policies"])
def bad_login():
    try:
        hvac.Client(url=URL).auth.userpass.login(username="alice", password="wrong")
    except hvac.exceptions.InvalidRequest:
        return "InvalidRequest"
    raise AssertionError("wrong password accepted")
step("userpass wrong password", bad_login)
step("enable approle", lambda: c.sys.enable_auth_method(method_type="approle"))
step("approle create role", lambda: c.auth.approle.create_or_update_approle(role_name="app", token_policies=["p"], token_ttl="1h", secret_id_num_uses=2))
step("approle read role", lambda: c.auth.approle.read_role(role_name="app")["data"]["token_ttl"])
role_id = {}
step("approle role id", lambda: role_id.setdefault("id", c.auth.approle.read_role_id(role_name="app")["data"]["role_id"]))
sid = {}
step("approle secret id", lambda: sid.setdefault("id", c.auth.approle.generate_secret_id(role_name="app", metadata={"env": "ci"})["data"]["secret_id"]))
step("approle secret id lookup", lambda: c.auth.approle.read_secret_id(role_name="app", secret_id=sid["id"])["data"]["metadata"])
step("approle list secret id accessors", lambda: len(c.auth.approle.list_secret_id_accessors(role_name="app")["data"]["keys"]))
step("approle login", lambda: hvac.Client(url=URL).auth.approle.login(role_id=role_id["id"], secret_id=sid["id"])["auth"]["metadata"])
def wrapped_secret_id():
    w = c.auth.approle.generate_secret_id(role_name="app", wrap_ttl="60s")["wrap_info"]
    unwrapped = hvac.Client(url=URL, token=w["token"]).sys.unwrap()
    return sorted(unwrapped["data"].keys())
step("approle wrapped secret id + unwrap", wrapped_secret_id)
def wrap_lookup():
    w = c.sys.wrap({"a": "b"}, ttl="5m") if hasattr(c.sys, "wrap") else c.write("sys/wrapping/wrap", wrap_ttl="5m", a="b")
    token = w["wrap_info"]["token"]
    info = c.sys.read_wrapping_properties(token)["data"] if hasattr(c.sys, "read_wrapping_properties") else c.write("sys/wrapping/lookup", token=token)["data"]
    return info["creation_ttl"]
step("wrap + lookup", wrap_lookup)
step("disable userpass", lambda: c.sys.disable_auth_method(path="userpass"))

# Database engine and leases (the machine's PostgreSQL, trust auth).
PG = os.environ.get("BULWARK_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
step("enable database", lambda: c.sys.enable_secrets_engine(backend_type="database"))
step("database configure", lambda: c.secrets.database.configure(name="pg", plugin_name="postgresql-database-plugin", connection_url=PG.replace("postgres@", "{{username}}@", 1), username="postgres", allowed_roles=["ro"]))
step("database read config", lambda: c.secrets.database.read_connection(name="pg")["data"]["plugin_name"])
step("database create role", lambda: c.secrets.database.create_role(name="ro", db_name="pg", creation_statements=["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"], default_ttl="1h", max_ttl="24h"))
step("database list roles", lambda: c.secrets.database.list_roles()["data"]["keys"])
lease = {}
step("database creds", lambda: lease.setdefault("id", c.secrets.database.generate_credentials(name="ro")["lease_id"]))
step("lease lookup", lambda: c.sys.read_lease(lease_id=lease["id"])["data"]["ttl"])
step("lease renew", lambda: c.sys.renew_lease(lease_id=lease["id"], increment=7200)["lease_duration"])
step("lease list", lambda: c.sys.list_leases(prefix="database/creds/ro")["data"]["keys"])
step("lease revoke", lambda: c.sys.revoke_lease(lease_id=lease["id"]))
step("disable database", lambda: c.sys.disable_secrets_engine(path="database"))

print(f"{len(failed)} failed")
sys.exit(1 if failed else 0)
