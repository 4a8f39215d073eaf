// The statement's Print button (a script file: the portal's CSP allows no inline scripts).
document.querySelectorAll("[data-print]").forEach((button) => {
  button.addEventListener("click", () => window.print());
});
