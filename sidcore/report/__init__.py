"""What a run shows a person: the terminal table (`table`), seed statistics over runs (`stats`,
``sid report``) and the report plots (`plots`). No JAX here."""
