// Preloaded into the npm peers (node --require) by tests/bench/peers.py: a server that is told to
// listen on a port alone (every address; supergateway has no option for the host) listens on
// 127.0.0.1 instead, so the benchmark stays on loopback.
'use strict';
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, '127.0.0.1');
  }
  return listen.apply(this, args);
};
