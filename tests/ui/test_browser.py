"""The UI in a real browser: Debian's headless Chromium driven by selenium through Debian's
chromium-driver, against the shared server. Screenshots of each page are kept (see conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.wait import WebDriverWait

from .conftest import ATTESTATION, PAGE_SIZE, SIGNATURE, Content

PHONE = (375, 740)
DESKTOP = (1280, 900)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    driver.set_window_size(*DESKTOP)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def anonymous(browser: WebDriver, content: Content) -> WebDriver:
    browser.get(f"{content.url}/ui/")
    browser.delete_all_cookies()
    browser.set_window_size(*DESKTOP)
    return browser


def follow(browser: WebDriver, element: WebElement) -> None:
    """Click a link or submit button and wait for the next page (a form's 303 races the
    next lookup otherwise)."""
    page = browser.find_element(By.TAG_NAME, "html")
    element.click()
    WebDriverWait(browser, 10).until(staleness_of(page))


def shot(browser: WebDriver, artifacts: Path, name: str) -> None:
    assert browser.save_screenshot(str(artifacts / f"{name}.png"))


def listed(browser: WebDriver) -> list[str]:
    return [a.text for a in browser.find_elements(By.CSS_SELECTOR, "ul.repositories a")]


def heading(browser: WebDriver) -> str:
    return str(browser.find_element(By.TAG_NAME, "h1").text)


def log_in(browser: WebDriver, content: Content, user: str, password: str) -> None:
    browser.get(f"{content.url}/ui/login")
    browser.find_element(By.ID, "username").send_keys(user)
    browser.find_element(By.ID, "password").send_keys(password)
    follow(browser, browser.find_element(By.CSS_SELECTOR, "form.login button"))


def test_anonymous_sees_public_repositories_paged_and_filtered(
    anonymous: WebDriver, content: Content, artifacts: Path
) -> None:
    browser = anonymous
    browser.get(f"{content.url}/ui/")
    shot(browser, artifacts, "repositories")
    first = listed(browser)
    assert first == ["public/app", "public/multi", "public/p1"]
    assert len(first) == PAGE_SIZE
    follow(browser, browser.find_element(By.LINK_TEXT, "Next page"))
    assert listed(browser) == ["public/p2", "public/p3"]  # team-a/*, secret/* never listed
    assert not browser.find_elements(By.LINK_TEXT, "Next page")
    follow(browser, browser.find_element(By.LINK_TEXT, "First page"))
    assert listed(browser) == first
    search = browser.find_element(By.ID, "q")
    search.send_keys("mult")
    follow(browser, browser.find_element(By.CSS_SELECTOR, "form.filter button"))
    assert listed(browser) == ["public/multi"]
    assert browser.find_element(By.ID, "q").get_attribute("value") == "mult"
    shot(browser, artifacts, "repositories-filtered")


def test_repository_to_tag_to_manifest_to_referrers(
    anonymous: WebDriver, content: Content, artifacts: Path
) -> None:
    browser = anonymous
    follow(browser, browser.find_element(By.LINK_TEXT, "public/app"))
    assert heading(browser) == "public/app"
    row = browser.find_element(By.CSS_SELECTOR, "table.tags tbody tr")
    assert "v1" in row.text and content.image[:19] in row.text
    assert "application/vnd.oci.image.manifest.v1+json" in row.text
    pushed = row.find_element(By.TAG_NAME, "time").get_attribute("datetime")
    assert pushed is not None
    age = datetime.now(UTC) - datetime.fromisoformat(pushed)
    assert timedelta(0) <= age < timedelta(minutes=10), pushed  # pushed by the fixture
    shot(browser, artifacts, "tags")
    follow(browser, browser.find_element(By.LINK_TEXT, "v1"))
    assert heading(browser) == f"public/app@{content.image}"
    text = browser.find_element(By.TAG_NAME, "main").text
    host = content.url.removeprefix("http://")
    assert f"docker pull {host}/public/app@{content.image}" in text
    assert f"oras pull {host}/public/app@{content.image}" in text
    for section in ("Config", "Layers", "Annotations", "Referrers"):
        assert browser.find_element(By.XPATH, f"//h2[text()='{section}']")
    assert "e2e image app" in text  # the image's annotation
    # The tree: the signature, and under it the attestation about the signature.
    tree = browser.find_element(By.CSS_SELECTOR, "ul.tree")
    assert SIGNATURE in tree.text
    nested = tree.find_element(By.CSS_SELECTOR, "ul.tree li ul.tree li")
    assert ATTESTATION in nested.text
    shot(browser, artifacts, "manifest")
    follow(browser, tree.find_element(By.PARTIAL_LINK_TEXT, content.signature[:19]))
    assert heading(browser) == f"public/app@{content.signature}"
    main = browser.find_element(By.TAG_NAME, "main")
    assert SIGNATURE in main.text
    # An annotation carrying markup is shown as text, not run.
    assert "<script>alert(1)</script>" in main.text
    follow(browser, main.find_element(By.PARTIAL_LINK_TEXT, content.image))  # back via the subject
    assert heading(browser) == f"public/app@{content.image}"


def test_index_children_by_platform(
    anonymous: WebDriver, content: Content, artifacts: Path
) -> None:
    browser = anonymous
    browser.get(f"{content.url}/ui/r/public/multi")
    follow(browser, browser.find_element(By.LINK_TEXT, "latest"))
    main = browser.find_element(By.TAG_NAME, "main")
    assert "application/vnd.oci.image.index.v1+json" in main.text
    assert "linux/amd64" in main.text and "linux/arm64" in main.text
    shot(browser, artifacts, "index")
    follow(browser, main.find_element(By.PARTIAL_LINK_TEXT, content.children[1][:19]))
    assert heading(browser) == f"public/multi@{content.children[1]}"
    assert browser.find_element(By.XPATH, "//h2[text()='Layers']")
    crumbs = browser.find_element(By.CSS_SELECTOR, "nav.crumbs")
    follow(browser, crumbs.find_element(By.LINK_TEXT, "public/multi"))
    assert heading(browser) == "public/multi"


def test_tags_are_paged(anonymous: WebDriver, content: Content) -> None:
    browser = anonymous
    browser.get(f"{content.url}/ui/r/public/p1")

    def tags() -> list[str]:
        cells = browser.find_elements(By.CSS_SELECTOR, "table.tags tbody tr td:first-child")
        return [cell.text for cell in cells]

    assert tags() == ["v1", "v2", "v3"]
    follow(browser, browser.find_element(By.LINK_TEXT, "Next page"))
    assert tags() == ["v4"]


def test_denied_repository_is_neither_listed_nor_shown(
    anonymous: WebDriver, content: Content, artifacts: Path
) -> None:
    browser = anonymous
    browser.get(f"{content.url}/ui/r/team-a/tool")
    assert heading(browser) == "Not found"
    shot(browser, artifacts, "not-found")
    log_in(browser, content, "alice", "alice-pw")
    assert browser.find_element(By.CSS_SELECTOR, "header .logout span").text == "alice"
    browser.get(f"{content.url}/ui/?q=o")
    assert listed(browser) == ["team-a/tool"]  # the second page holds the rest
    browser.get(f"{content.url}/ui/?q=vault")
    assert listed(browser) == []
    browser.get(f"{content.url}/ui/r/team-a/tool")
    assert heading(browser) == "team-a/tool"
    denied = f"{content.url}/ui/r/secret/vault"
    browser.get(denied)
    denied_text = browser.find_element(By.TAG_NAME, "main").text
    browser.get(f"{content.url}/ui/r/secret/nothing-here")
    assert browser.find_element(By.TAG_NAME, "main").text == denied_text  # nothing revealed
    assert heading(browser) == "Not found"
    follow(browser, browser.find_element(By.CSS_SELECTOR, "header .logout button"))
    assert browser.find_element(By.LINK_TEXT, "Log in")
    browser.get(f"{content.url}/ui/r/team-a/tool")
    assert heading(browser) == "Not found"


def test_wrong_password_is_refused_and_admin_sees_all(
    anonymous: WebDriver, content: Content, artifacts: Path
) -> None:
    browser = anonymous
    log_in(browser, content, "alice", "wrong")
    assert "Invalid user name or password" in browser.find_element(By.CSS_SELECTOR, ".error").text
    shot(browser, artifacts, "login-refused")
    log_in(browser, content, "root", "root-pw")
    browser.get(f"{content.url}/ui/?q=vault")
    assert listed(browser) == ["secret/vault"]
    follow(browser, browser.find_element(By.LINK_TEXT, "secret/vault"))
    assert heading(browser) == "secret/vault"


@pytest.mark.parametrize(
    "page", ["/ui/", "/ui/r/public/app", "/ui/r/public/app/-/manifest/v1", "/ui/login"]
)
def test_nothing_overflows_a_phone(
    anonymous: WebDriver, content: Content, artifacts: Path, page: str
) -> None:
    browser = anonymous
    browser.set_window_size(*PHONE)
    browser.get(content.url + page)
    width = browser.execute_script("return document.documentElement.clientWidth")
    scrolled = browser.execute_script("return document.documentElement.scrollWidth")
    assert scrolled <= width, (page, scrolled, width)
    name = page.strip("/").replace("/", "_") or "root"
    shot(browser, artifacts, f"phone-{name}")
