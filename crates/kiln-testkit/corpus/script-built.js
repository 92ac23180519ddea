// A module script (deferred by nature) fills the page in, as bundlers' output does.
const root = document.getElementById('root');
const main = document.createElement('main');
main.innerHTML = '<h1>Built by script</h1><ul>' +
  ['Alpha', 'Beta', 'Gamma'].map((name) => `<li class="item">${name}</li>`).join('') + '</ul>';
root.appendChild(main);
document.title = 'Built by script · Corpus';
