#!/usr/bin/env python3
"""An example device for dbus-mqtt-devices: a temperature sensor and a tank.

It does what firmware on an ESP32 would do, in Python with paho-mqtt
(1.x or 2.x):

1. connect with a last will that unregisters it (``connected: 0``),
2. subscribe to its replies and publish its Status,
3. read its device instances and topic paths from the ``DBus`` reply,
4. publish values: through the GX's MQTT gateway (``W/`` topics, protocol v2)
   or straight to the driver (``device/<id>/Values``, protocol v3),
5. print what the GX writes back (``device/<id>/Write``, v3) and any
   ``device/<id>/Error``,
6. on exit, unregister.

    python3 examples/device.py --host 192.168.1.10            # v2, through the gateway
    python3 examples/device.py --host 127.0.0.1 --v3 --count 5  # v3, direct values

Requires paho-mqtt (``pip install paho-mqtt`` or ``apt install python3-paho-mqtt``).
"""

import argparse
import json
import math
import sys
import threading
import time

import paho.mqtt.client as mqtt


def make_client(client_id):
    """A paho client for both paho-mqtt 1.x and 2.x."""
    if hasattr(mqtt, "CallbackAPIVersion"):
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    return mqtt.Client(client_id=client_id)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="MQTT broker (the GX)")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--id", default="example1", help="client id of this device")
    parser.add_argument("--v3", action="store_true",
                        help="use protocol v3: rich declaration and direct Values")
    parser.add_argument("--count", type=int, default=0,
                        help="values to send, then unregister and exit (0: run until Ctrl-C)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between values")
    args = parser.parse_args()

    client_id = args.id
    topic = "device/{}/".format(client_id)
    replied = threading.Event()
    reply = {}

    def on_message(client, userdata, msg):
        payload = msg.payload.decode("utf-8", "replace")
        if msg.topic == topic + "DBus":
            reply.update(json.loads(payload))
            print("registered: " + payload, flush=True)
            replied.set()
        elif msg.topic == topic + "Error":
            print("error from the driver: " + payload, flush=True)
        elif msg.topic == topic + "Write":
            print("written on the GX: " + payload, flush=True)

    def on_connect(client, userdata, *rest):
        # Subscribe first, then announce: the reply cannot be missed.
        client.subscribe(topic + "DBus", qos=1)
        client.subscribe(topic + "Error", qos=1)
        client.subscribe(topic + "Write", qos=1)
        if args.v3:
            services = {
                "t1": {"type": "temperature", "name": "Example fridge",
                       "settings": {"TemperatureType": 1}},
                "tk1": {"type": "tank", "name": "Example water tank",
                        "settings": {"FluidType": 1}},
            }
        else:
            services = {"t1": "temperature", "tk1": "tank"}
        status = {"clientId": client_id, "connected": 1, "version": "v1.0",
                  "services": services}
        if args.v3:
            status["timeout"] = max(10, int(args.interval * 5))
        client.publish(topic + "Status", json.dumps(status), qos=1)

    client = make_client(client_id)
    client.on_message = on_message
    client.on_connect = on_connect
    # The last will unregisters the device when it loses power or Wi-Fi.
    client.will_set(topic + "Status", json.dumps({"clientId": client_id, "connected": 0}),
                    qos=1)
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()

    if not replied.wait(timeout=30):
        print("no reply from dbus-mqtt-devices within 30 s", file=sys.stderr)
        client.loop_stop()
        return 1

    sent = 0
    try:
        while args.count == 0 or sent < args.count:
            temperature = round(4.0 + math.sin(sent / 5.0), 2)
            level = round(50.0 + 10.0 * math.cos(sent / 7.0), 1)
            if args.v3:
                values = {"t1": {"Temperature": temperature, "Humidity": 60},
                          "tk1": {"Level": level}}
                client.publish(topic + "Values", json.dumps(values), qos=1)
            else:
                w_t1 = reply["topicPath"]["t1"]["W"]
                w_tk1 = reply["topicPath"]["tk1"]["W"]
                client.publish(w_t1 + "/Temperature", json.dumps({"value": temperature}), qos=1)
                client.publish(w_tk1 + "/Level", json.dumps({"value": level}), qos=1)
            sent += 1
            print("sent temperature={} level={}".format(temperature, level), flush=True)
            time.sleep(args.interval)
    except KeyboardInterrupt:
        pass

    info = client.publish(topic + "Status",
                          json.dumps({"clientId": client_id, "connected": 0}), qos=1)
    info.wait_for_publish()
    client.disconnect()
    client.loop_stop()
    print("unregistered", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
