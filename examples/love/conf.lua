-- LÖVE configuration of the paho.mqtt example game (examples/love/main.lua)
function love.conf(t)
  t.identity = "paho-mqtt-example"
  t.window.title = "paho.mqtt in LÖVE"
  t.window.width, t.window.height = 480, 240
  t.window.vsync = 1 -- frames at the display's rate (60 Hz under Xvfb)
  t.modules.audio, t.modules.sound, t.modules.joystick, t.modules.physics = false, false, false, false
end
