//! The switching unit's configuration blob (docs/unit-abi.md, "JSON payloads"): what a unit library's
//! `create` decodes (`overlay::UnitSetup::decode`) and builds its tables from, then a command blob
//! (`unit::UnitCommand::decode`, what `apply` takes) applied to the unit made, and one frame from each side.
use switchyard::overlay::{UnitSetup, VRouterUnit};
use switchyard::pipeline::{Burst, BytesPacket, PortId, Side};
use switchyard::unit::{SwitchingUnit, UnitCommand};

/// Fuzz body `unit_config`: the setup blob, optionally followed by a NUL byte and a command blob.
pub fn unit_config(data: &[u8]) {
    let (setup, command) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let Ok(setup) = UnitSetup::decode(setup) else { return };
    let unit = VRouterUnit::new(setup);
    if let Some(command) = command.and_then(|c| UnitCommand::decode(c).ok()) {
        let _ = SwitchingUnit::<BytesPacket>::apply(&unit, &command);
    }
    SwitchingUnit::<BytesPacket>::housekeeping(&unit);
    let state = SwitchingUnit::<BytesPacket>::export(&unit).expect("the vRouter exports its state");
    let blob = serde_json::to_vec(&state).expect("a state serializes");
    assert!(serde_json::from_slice::<switchyard::unit::UnitState>(&blob).is_ok(), "an exported state reads back");
    let mut worker = SwitchingUnit::<BytesPacket>::attach(&unit, 1_000_000);
    for (port, side) in [(PortId(0), Side::Vm), (PortId(1), Side::Uplink)] {
        let mut burst = Burst::new(port);
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        frame.resize(60, 0);
        let _ = burst.push(BytesPacket::new(&frame));
        worker.process(side, &mut burst);
        burst.drain(|_, _| {});
    }
}
