"""Online charging: credit control in real time, over Nchf (HTTP) and Diameter Gy."""
