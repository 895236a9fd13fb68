<?php
// The broker benchmark's back end: every connection joins room "bench"; each `say`
// goes to the whole room.
$message = json_decode($_POST['message'], true);
$connection = json_decode($_POST['connection'], true);
$r = array();
if ($message['type'] == 'session-connect') {
    $r[] = array('type' => 'session', 'data' => array('room' => 'bench'));
    $r[] = array('type' => 'send', 'message' => array('type' => 'ready'));
} elseif ($message['type'] == 'client-say') {
    $r[] = array('type' => 'send', 'match' => array('room' => $connection['room']),
        'message' => array('type' => 'said', 't' => $message['t'], 'n' => $message['n'], 'from' => $message['from']));
}
print(json_encode($r));
