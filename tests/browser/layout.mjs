// What "reads without sideways scrolling" means, for every page check: neither the page nor
// any table's scroll region is wider than the window. A diff may scroll; it is code.
export async function sideways(page) {
  return await page.evaluate(() => {
    const regions = [...document.querySelectorAll(".scroll")].map((e) => e.scrollWidth - e.clientWidth);
    return Math.max(document.documentElement.scrollWidth - window.innerWidth, ...regions);
  });
}
