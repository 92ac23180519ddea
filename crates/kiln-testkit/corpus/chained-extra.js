// Loaded by the chain's second link; fetches once more before writing the final step.
setTimeout(function () {
  fetch('/api/delay/120/third').then(function (r) { return r.json(); }).then(function (three) {
    var li = document.createElement('li');
    li.textContent = 'third link: ' + three.name;
    document.getElementById('steps').appendChild(li);
  });
}, 30);
