job "a" { group "g" { task "t" { env = { A = 1 } env { B = 2 } } } }
