#!/usr/bin/env python3
"""Drives a BusItem service and the settings service the way Victron's Python code does.

Usage: test_vedbus_compat.py <bus address> <service name>

The service must be the one the Rust test registers (see tests/integration/busitem.rs), and
com.victronenergy.settings must run on the same bus. Item proxies are used without
dbus_interface, as velib's VeDbusItemImport does (`self._proxy.GetValue()`), so the calls carry
no interface header; AddSettings is called as velib's SettingsDevice does. Prints OK on success;
any failed check raises and exits non-zero.
"""
import sys

import dbus

UNKNOWN_OBJECT = 'org.freedesktop.DBus.Error.UnknownObject'
UNKNOWN_METHOD = 'org.freedesktop.DBus.Error.UnknownMethod'


def wrap(value):
    """velib ve_utils.wrap_dbus_value, for the types used here."""
    if value is None:
        return dbus.Array([], signature=dbus.Signature('i'), variant_level=1)
    if isinstance(value, float):
        return dbus.Double(value, variant_level=1)
    if isinstance(value, bool):
        return dbus.Boolean(value, variant_level=1)
    if isinstance(value, int):
        return dbus.Int32(value, variant_level=1)
    return dbus.String(value, variant_level=1)


def expect_error(name, fn):
    try:
        fn()
    except dbus.exceptions.DBusException as e:
        assert e.get_dbus_name() == name, (e.get_dbus_name(), name)
        return
    raise AssertionError('expected %s' % name)


def main():
    address, service = sys.argv[1], sys.argv[2]
    bus = dbus.bus.BusConnection(address)

    def item(path):
        return bus.get_object(service, path, introspect=False)

    temperature = item('/Temperature')
    value = temperature.GetValue()
    assert isinstance(value, dbus.Double) and value == 21.5, repr(value)
    assert temperature.GetText() == '21.5 C', temperature.GetText()
    assert item('/ProductId').GetText() == '0xA162'
    assert item('/DeviceInstance').GetValue() == 20

    # SetValue as VeDbusItemImport.set_value sends it: a variant, no interface
    assert temperature.SetValue(wrap(25)) == 0
    value = temperature.GetValue()
    assert isinstance(value, dbus.Double) and value == 25.0, repr(value)
    assert temperature.SetValue(wrap('abc')) == 1
    assert temperature.SetValue(wrap(1000.0)) == 2
    assert item('/DeviceInstance').SetValue(wrap(3)) == 1
    assert temperature.SetValue(wrap(None)) == 0
    assert len(temperature.GetValue()) == 0
    assert temperature.GetText() == '---'

    # dbusmonitor before Venus 3.50: call_blocking with interface None
    v = bus.call_blocking(service, '/DeviceInstance', None, 'GetValue', '', [])
    assert v == 20, repr(v)

    # nodes and root
    mgmt = item('/Mgmt').GetValue()
    assert dict(mgmt) == {'ProcessName': 'test', 'Connection': 'MQTT'}, mgmt
    root = item('/')
    items = root.GetItems()
    assert '/Temperature' in items and '/Mgmt/ProcessName' in items, sorted(items)
    assert items['/Mgmt/ProcessName']['Value'] == 'test'
    assert items['/Temperature']['Text'] == '---'
    assert 'Ac/L1/Power' in root.GetValue()

    # errors as velib gives them
    expect_error(UNKNOWN_OBJECT, lambda: item('/Nope').GetValue())
    expect_error(UNKNOWN_METHOD, lambda: item('/Mgmt').GetItems())

    # settings as velib's SettingsDevice adds them, then read back as VeDbusItemImport does
    path = '/Settings/Devices/py_1/ClassAndVrmInstance'
    results = bus.call_blocking('com.victronenergy.settings', '/', 'com.victronenergy.Settings',
                                'AddSettings', 'aa{sv}', [[{'path': path, 'default': 'temperature:20'}]])
    assert results[0]['error'] == 0 and results[0]['value'] == 'temperature:20', results
    setting = bus.get_object('com.victronenergy.settings', path, introspect=False)
    assert setting.GetValue() == 'temperature:20'
    assert setting.SetValue(wrap('temperature:7')) == 0
    assert setting.GetValue() == 'temperature:7'
    assert setting.GetText() == 'temperature:7'
    print('OK')


if __name__ == '__main__':
    main()
