-- Lottery codes: a keyed pseudorandom permutation of a period's share
-- indexes 0..n-1, shared by the lottery scripts (prepended to them).
--
-- A balanced Feistel network over the smallest even number of bits whose
-- range covers n, with cycle walking to stay below n; a Feistel network is
-- a bijection whatever its round function, so no code is ever given twice.
-- The round keys come from the period's secret seed, so codes cannot be
-- predicted before the draw reveals it. Share index i gets code
-- code_base + 1 + permute(i).
--
-- A period stores perm_key(seed), not the seed: codes can be worked out
-- from it, the seed (which decides the draw) cannot, and the seed itself is
-- written only when the draw reveals it.

local function perm_key(seed)
  return redis.sha1hex(seed .. ':codes')
end

local function perm_new(h, n)
  local keys = {}
  for i = 0, 3 do
    keys[i + 1] = tonumber(string.sub(h, 1 + 6 * i, 6 + 6 * i), 16)
  end
  local half_bits = 1
  while 4 ^ half_bits < n do
    half_bits = half_bits + 1
  end
  return { keys = keys, half = 2 ^ half_bits, n = n }
end

-- The prime modulus makes every bit of the 24-bit key count (reducing
-- straight to a power of two would keep only the key's low bits). Stays
-- below 2^53 for halves up to 2^13 (n up to 2^26).
local function perm_round(r, k, half)
  return ((r * r + k) * 104729 + r * 7919) % 65521 % half
end

local function perm_forward(p, x)
  repeat
    local l, r = math.floor(x / p.half), x % p.half
    for i = 1, 4 do
      l, r = r, bit.bxor(l, perm_round(r, p.keys[i], p.half))
    end
    x = l * p.half + r
  until x < p.n
  return x
end

local function perm_backward(p, y)
  repeat
    local l, r = math.floor(y / p.half), y % p.half
    for i = 4, 1, -1 do
      l, r = bit.bxor(r, perm_round(l, p.keys[i], p.half)), l
    end
    y = l * p.half + r
  until y < p.n
  return y
end
