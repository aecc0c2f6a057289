-- settle: window.rs's TpmWindow::settle: the estimate replaced by the usage.
-- KEYS: T:w:<dep>   ARGV: now_ms, second, reserved, actual
local now = now_ms(ARGV[1])
settle(KEYS[1], math.floor(now / 1000), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
return 1
