import io, json, sys, tarfile, tempfile, time
from pathlib import Path
from playwright.sync_api import sync_playwright
from tests.helpers import PASSWORD, ensure_base_image, tar_bytes
from tests.served import layerdeck_serve
import docker

api = docker.APIClient(version="auto")
base = ensure_base_image(api)
files = {"Dockerfile": f"FROM {base}\nWORKDIR /app\nCOPY requirements.txt .\nRUN echo installing && sleep 1 && cat requirements.txt > /installed.txt\nCOPY app/ ./app/\nRUN ls app && sleep 0.5\n",
         "requirements.txt": "flask==3.0\n", "app/main.py": "print('hi')\n"}
with tempfile.TemporaryDirectory() as tmp, layerdeck_serve(Path(tmp) / "data") as served:
    s = served.session()
    def build(fs):
        r = s.post(served.url + "/api/v1/builds", data=tar_bytes(fs), headers={"Content-Type": "application/x-tar"}, params={"tag": "demo/shop:1"}).json()
        while True:
            b = s.get(served.url + r["api_url"]).json()
            if b["status"] not in ("queued", "running"): return b
            time.sleep(0.2)
    a = build(files)
    files["app/main.py"] = "print('hello')\n"
    b = build(files)
    files["requirements.txt"] = "flask==3.1\n"
    c = build(files)
    with sync_playwright() as p:
        br = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"])
        pg = br.new_page(viewport={"width": 1440, "height": 900})
        pg.goto(served.url + "/login"); pg.fill('[data-testid="login-name"]', "member"); pg.fill('[data-testid="login-password"]', PASSWORD); pg.click('[data-testid="login-submit"]'); pg.wait_for_selector('[data-testid="who"]')
        for name, url in (("build-b", f"/builds/{b['id']}"), ("build-c", f"/builds/{c['id']}"), ("compare", f"/builds/{a['id']}/compare/{c['id']}"), ("history", "/builds"), ("runs", "/runs"), ("home", "/")):
            pg.goto(served.url + url); pg.wait_for_timeout(800)
            pg.screenshot(path=f"/tmp/shots/{name}.png", full_page=True)
        br.close()
print("ok")
