"""The official Python client (`kubernetes` from PyPI) against a Skiff apiserver.

Run by tests/clients.rs with the server URL as the only argument; prints one line per
checked step and exits non-zero on the first failure.
"""
import sys
import threading
import time

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

cfg = client.Configuration()
cfg.host = sys.argv[1]
api = client.ApiClient(cfg)
core = client.CoreV1Api(api)
apps = client.AppsV1Api(api)


def step(msg):
    print(msg, flush=True)


# namespaces
core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="py")))
assert core.read_namespace("py").status.phase == "Active"
step("namespace created")

# create / list with selectors
for i in range(3):
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"cm{i}", labels={"i": str(i), "app": "py"}), data={"k": str(i)})
    core.create_namespaced_config_map("py", cm)
lst = core.list_namespaced_config_map("py", label_selector="app=py,i!=1")
assert sorted(c.metadata.name for c in lst.items) == ["cm0", "cm2"], lst.items
rv = lst.metadata.resource_version
step("configmaps created and listed")

# watch from the list's resourceVersion while another thread changes things
def writer():
    time.sleep(0.5)
    core.patch_namespaced_config_map("cm0", "py", {"data": {"k": "changed"}})
    core.delete_namespaced_config_map("cm2", "py")
    core.create_namespaced_config_map("py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm3", labels={"app": "py"})))

threading.Thread(target=writer).start()
seen = []
w = watch.Watch()
for ev in w.stream(core.list_namespaced_config_map, "py", label_selector="app=py", resource_version=rv, timeout_seconds=10):
    seen.append((ev["type"], ev["object"].metadata.name))
    if len(seen) == 3:
        w.stop()
assert seen == [("MODIFIED", "cm0"), ("DELETED", "cm2"), ("ADDED", "cm3")], seen
step("watch saw " + ", ".join(f"{t} {n}" for t, n in seen))

# a deployment, scaled through the scale subresource
dep = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
             "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}},
}
apps.create_namespaced_deployment("py", dep)
apps.patch_namespaced_deployment_scale("d", "py", {"spec": {"replicas": 4}})
assert apps.read_namespaced_deployment("d", "py").spec.replicas == 4
step("deployment created and scaled")

# errors come back as ApiException with the Status code
try:
    core.read_namespaced_config_map("nope", "py")
    raise AssertionError("expected 404")
except ApiException as e:
    assert e.status == 404 and '"reason":"NotFound"' in e.body.replace(" ", ""), e.body
try:
    core.create_namespaced_config_map("py", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm0")))
    raise AssertionError("expected 409")
except ApiException as e:
    assert e.status == 409, e.status
step("errors are ApiExceptions with the right codes")

# delete, and the namespace goes once empty
core.delete_namespace("py")
for _ in range(50):
    try:
        core.read_namespace("py")
        time.sleep(0.2)
    except ApiException as e:
        assert e.status == 404
        break
else:
    raise AssertionError("namespace py was not removed")
step("namespace deleted with its content")
print("python client: all steps passed")
