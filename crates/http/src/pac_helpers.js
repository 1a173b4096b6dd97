// The PAC helpers (nw_transfer::pac), over the natives __nwResolve, __nwResolveEx, __nwMyIp,
// __nwMyIpEx and __nwInNetEx. Day and date ranges include both of their ends; a range past its
// end wraps around (weekdayRange("FRI", "MON") covers the weekend).

function isPlainHostName(host) {
  return String(host).indexOf(".") < 0;
}

function dnsDomainIs(host, domain) {
  host = String(host).toLowerCase();
  domain = String(domain).toLowerCase();
  return host.length >= domain.length &&
    host.substring(host.length - domain.length) === domain;
}

function localHostOrDomainIs(host, hostdom) {
  host = String(host).toLowerCase();
  hostdom = String(hostdom).toLowerCase();
  return host === hostdom ||
    (host.indexOf(".") < 0 && hostdom.substring(0, host.length + 1) === host + ".");
}

function dnsDomainLevels(host) {
  return String(host).split(".").length - 1;
}

function dnsResolve(host) {
  var found = __nwResolve(String(host));
  return found == null ? null : found;
}

function dnsResolveEx(host) {
  return __nwResolveEx(String(host));
}

function isResolvable(host) {
  return dnsResolve(host) !== null;
}

function isResolvableEx(host) {
  return dnsResolveEx(host) !== "";
}

function myIpAddress() {
  return __nwMyIp();
}

function myIpAddressEx() {
  return __nwMyIpEx();
}

// A dotted IPv4 address as a 32-bit number, or null when the text is not one.
function __nwIpv4(text) {
  var parts = String(text).split(".");
  if (parts.length !== 4) return null;
  var n = 0;
  for (var i = 0; i < 4; i++) {
    if (!/^[0-9]{1,3}$/.test(parts[i]) || Number(parts[i]) > 255) return null;
    n = n * 256 + Number(parts[i]);
  }
  return n;
}

// As Netscape's: the address as a signed 32-bit number (192.168.1.1 is -1062731519), which
// scripts compare with the results of & and |, themselves signed.
function convert_addr(ip) {
  var n = __nwIpv4(ip);
  return n === null ? 0 : n | 0;
}

function isInNet(host, pattern, mask) {
  var ip = __nwIpv4(host) === null ? dnsResolve(host) : String(host);
  if (ip === null) return false;
  var a = __nwIpv4(ip), p = __nwIpv4(pattern), m = __nwIpv4(mask);
  if (a === null || p === null || m === null) return false;
  return ((a & m) >>> 0) === ((p & m) >>> 0);
}

function isInNetEx(ip, prefix) {
  return __nwInNetEx(String(ip), String(prefix));
}

function sortIpAddressList(list) {
  var all = String(list).split(";").filter(function (a) { return a !== ""; });
  var v6 = all.filter(function (a) { return a.indexOf(":") >= 0; });
  var v4 = all.filter(function (a) { return a.indexOf(":") < 0; });
  return v6.concat(v4).join(";");
}

// A shell pattern: * any text, ? one character, [abc] / [a-z] / [!a] a set; the rest literal.
function shExpMatch(text, pattern) {
  var source = "^";
  pattern = String(pattern);
  for (var i = 0; i < pattern.length; i++) {
    var c = pattern.charAt(i);
    var close = c === "[" ? pattern.indexOf("]", i + 2) : -1;
    if (c === "*") source += ".*";
    else if (c === "?") source += ".";
    else if (close > 0) {
      var set = pattern.substring(i + 1, close).replace(/\\/g, "\\\\");
      source += "[" + (set.charAt(0) === "!" ? "^" + set.substring(1) : set) + "]";
      i = close;
    } else if ("\\^$.|+()[]{}/".indexOf(c) >= 0) source += "\\" + c;
    else source += c;
  }
  return new RegExp(source + "$").test(String(text));
}

// The arguments without a trailing "GMT", and whether it was there.
function __nwZone(args) {
  var list = Array.prototype.slice.call(args);
  var gmt = list.length > 0 && String(list[list.length - 1]).toUpperCase() === "GMT";
  if (gmt) list.pop();
  return { list: list, gmt: gmt };
}

// a <= x <= b, or, when a is past b, the range that wraps around: x >= a or x <= b.
function __nwWithin(x, a, b) {
  return a <= b ? a <= x && x <= b : x >= a || x <= b;
}

var __nwDays = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
var __nwMonths = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                  "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

function weekdayRange() {
  var z = __nwZone(arguments);
  var from = __nwDays.indexOf(String(z.list[0]).toUpperCase());
  var to = z.list.length > 1 ? __nwDays.indexOf(String(z.list[1]).toUpperCase()) : from;
  if (from < 0 || to < 0) return false;
  var now = new Date();
  return __nwWithin(z.gmt ? now.getUTCDay() : now.getDay(), from, to);
}

// dateRange(day | month | year [, …] [, "GMT"]): one value, or the two ends of a range given
// with the same fields (day and month, month and year, or all three).
function dateRange() {
  var z = __nwZone(arguments);
  var fields = z.list.map(function (v) {
    var month = __nwMonths.indexOf(String(v).toUpperCase());
    if (month >= 0) return { kind: "month", value: month };
    var n = Number(v);
    if (!isFinite(n) || n !== Math.floor(n)) return null;
    if (n >= 1 && n <= 31) return { kind: "day", value: n };
    if (n >= 1000) return { kind: "year", value: n };
    return null;
  });
  if (fields.length === 0 || fields.indexOf(null) >= 0) return false;
  var now = new Date();
  var current = {
    year: z.gmt ? now.getUTCFullYear() : now.getFullYear(),
    month: z.gmt ? now.getUTCMonth() : now.getMonth(),
    day: z.gmt ? now.getUTCDate() : now.getDate()
  };
  // A point as one number, most significant field first, using only the kinds given.
  function key(point, kinds) {
    var k = 0;
    if (kinds.year) k = k * 10000 + point.year;
    if (kinds.month) k = k * 100 + point.month;
    if (kinds.day) k = k * 100 + point.day;
    return k;
  }
  var half = fields.length === 1 ? 1 : fields.length / 2;
  if (half !== Math.floor(half)) return false;
  var from = {}, to = {}, kinds = {};
  for (var i = 0; i < half; i++) {
    var a = fields[i], b = fields.length === 1 ? a : fields[i + half];
    if (a.kind !== b.kind || kinds[a.kind]) return false;
    kinds[a.kind] = true;
    from[a.kind] = a.value;
    to[b.kind] = b.value;
  }
  var x = key(current, kinds), lo = key(from, kinds), hi = key(to, kinds);
  return kinds.year ? lo <= x && x <= hi : __nwWithin(x, lo, hi);
}

// timeRange(hour | h1, h2 | h1, m1, h2, m2 | h1, m1, s1, h2, m2, s2 [, "GMT"]): one hour, or
// from the first time through the second, to the precision given ("8, 17" is 8:00:00 to
// 17:59:59), as pacparser and the browsers whose code it shares read it.
function timeRange() {
  var z = __nwZone(arguments);
  var v = z.list.map(Number);
  for (var i = 0; i < v.length; i++) if (!isFinite(v[i])) return false;
  var from, to;
  if (v.length === 1) { from = v[0] * 3600; to = from + 3599; }
  else if (v.length === 2) { from = v[0] * 3600; to = v[1] * 3600 + 3599; }
  else if (v.length === 4) { from = v[0] * 3600 + v[1] * 60; to = v[2] * 3600 + v[3] * 60 + 59; }
  else if (v.length === 6) {
    from = v[0] * 3600 + v[1] * 60 + v[2];
    to = v[3] * 3600 + v[4] * 60 + v[5];
  } else return false;
  var now = new Date();
  var s = z.gmt
    ? now.getUTCHours() * 3600 + now.getUTCMinutes() * 60 + now.getUTCSeconds()
    : now.getHours() * 3600 + now.getMinutes() * 60 + now.getSeconds();
  return __nwWithin(s, from, to);
}
