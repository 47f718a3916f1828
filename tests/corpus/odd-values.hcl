job "a" {
  count = 1e3
  meta = { "x-y" = [1, {a = 2}] }
}
