// The history page: tick two builds, press Compare (the form works without this script too; the server
// answers anything but two with a sentence). Here: at most two ticked, the newest tick replacing the
// oldest, and the button says what it will do.

const form = document.getElementById("compare-form");
const hint = document.getElementById("compare-hint");
const submit = document.getElementById("compare-submit");
const picks = [...document.querySelectorAll("[data-testid=compare-pick]")];
const order = []; // ticked checkboxes, oldest tick first

function render() {
  const ids = order.map((box) => Number(box.value)).sort((a, b) => a - b);
  submit.disabled = ids.length !== 2;
  if (ids.length === 2) hint.textContent = `Compare #${ids[0]} with #${ids[1]}.`;
  else if (ids.length === 1) hint.textContent = `#${ids[0]} ticked: tick one more build.`;
  else hint.textContent = "Tick two builds to compare their steps side by side.";
}

for (const box of picks) {
  if (box.checked) order.push(box); // kept by the browser after going back
  box.addEventListener("change", () => {
    const at = order.indexOf(box);
    if (at >= 0) order.splice(at, 1);
    if (box.checked) {
      order.push(box);
      if (order.length > 2) order.shift().checked = false;
    }
    render();
  });
}

if (form) render();
