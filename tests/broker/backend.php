<?php
// A back end written the way the earlier broker's sites were: two POST fields,
// `message` and `connection`, each JSON; a JSON list of commands printed back.
// Each event is also appended to $BROKER_TEST_LOG, one JSON line, for the tests.

$message = json_decode($_POST['message'], true);
$connection = json_decode($_POST['connection'], true);
$log = getenv('BROKER_TEST_LOG');
if ($log) {
    file_put_contents($log, json_encode(array(
        'message' => $message,
        'connection' => $connection,
        'content_type' => $_SERVER['CONTENT_TYPE'],
    )) . "\n", FILE_APPEND | LOCK_EX);
}

$response = array();
switch ($message['type']) {
    case 'session-connect':
        $response[] = array('type' => 'session', 'data' => array('room' => 'lobby'));
        $response[] = array('type' => 'send', 'message' => array('type' => 'welcome', 'wskey' => $connection['wskey']));
        break;
    case 'client-join':
        $response[] = array('type' => 'session', 'data' => array('room' => $message['room']));
        $response[] = array('type' => 'send', 'message' => array('type' => 'joined', 'room' => $message['room']));
        break;
    case 'client-say':
        $response[] = array('type' => 'send', 'match' => array('room' => $connection['room']),
            'message' => array('type' => 'said', 'text' => $message['text'], 'from' => $connection['wskey']));
        break;
    case 'client-shout':
        $response[] = array('type' => 'send', 'match' => array('room' => '*'),
            'message' => array('type' => 'shouted', 'text' => $message['text']));
        break;
    case 'client-hello':
        $response[] = array('type' => 'send', 'message' => array('type' => 'echoed',
            'content' => $message['content'], 'name' => $connection['name']));
        break;
    case 'client-me':
    case 'client-whoami':
        $response[] = array('type' => 'send', 'message' => array('type' => 'you', 'connection' => $connection, 'message' => $message));
        break;
    case 'client-bye':
        $response[] = array('type' => 'close');
        break;
    case 'client-log':
        $response[] = array('type' => 'log', 'text' => 'the back end says hello');
        break;
    case 'client-odd':
        // An unknown command and a broken one are skipped; the rest run.
        $response[] = array('type' => 'jump');
        $response[] = null;
        $response[] = array('type' => 'send', 'message' => array('type' => 'after-odd'));
        break;
    case 'client-garbage':
        print('this is not JSON');
        exit;
    case 'client-error':
        http_response_code(500);
        $response[] = array('type' => 'send', 'message' => array('type' => 'despite-500'));
        break;
    case 'client-huge':
        // Over the broker's --max-answer-bytes in the test that asks for it.
        $response[] = array('type' => 'log', 'text' => str_repeat('x', 100000));
        break;
    case 'client-redirect':
        header('Location: /elsewhere.php', true, 302);
        print('<html>moved</html>');
        exit;
    case 'client-slow':
        sleep(3);
        $response[] = array('type' => 'send', 'message' => array('type' => 'slow-done'));
        break;
}
print(json_encode($response));
