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

print(f"{len(failed)} failed")
sys.exit(1 if failed else 0)
