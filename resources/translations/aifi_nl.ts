<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE TS>
<TS version="2.1" language="nl_NL">
<context>
    <name>AccuracyTableModel</name>
    <message>
        <location filename="../../aifi_app/gui/accuracy_model.py" line="66"/>
        <source>Algorithm</source>
        <translation>Algoritme</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/accuracy_model.py" line="67"/>
        <source>Judged</source>
        <translation>Beoordeeld</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/accuracy_model.py" line="68"/>
        <source>Agreement</source>
        <translation>Overeenstemming</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/accuracy_model.py" line="69"/>
        <source>PPV</source>
        <translation>PVW</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/accuracy_model.py" line="70"/>
        <source>Sensitivity*</source>
        <translation>Sensitiviteit*</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/accuracy_model.py" line="71"/>
        <source>Unsure</source>
        <translation>Onzeker</translation>
    </message>
</context>
<context>
    <name>AlgorithmsScreen</name>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="215"/>
        <source>Algorithm packages</source>
        <translation>Algoritmepakketten</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="218"/>
        <source>Id</source>
        <translation>Id</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="219"/>
        <source>Name</source>
        <translation>Naam</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="220"/>
        <source>Vendor</source>
        <translation>Leverancier</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="221"/>
        <source>Version</source>
        <translation>Versie</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="222"/>
        <source>State</source>
        <translation>Status</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="223"/>
        <source>Signed by</source>
        <translation>Ondertekend door</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="224"/>
        <source>Source</source>
        <translation>Bron</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="227"/>
        <source>Install from file…</source>
        <translation>Installeren uit bestand…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="228"/>
        <source>Enable</source>
        <translation>Inschakelen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="229"/>
        <source>Disable</source>
        <translation>Uitschakelen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="230"/>
        <source>Remove</source>
        <translation>Verwijderen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="231"/>
        <source>Routing rules</source>
        <translation>Routeringsregels</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="232"/>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="235"/>
        <source>Route</source>
        <translation>Route</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="232"/>
        <source>Algorithm</source>
        <translation>Algoritme</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="232"/>
        <source>Criteria</source>
        <translation>Criteria</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="233"/>
        <source>Study number in the queue:</source>
        <translation>Onderzoeksnummer in de wachtrij:</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="234"/>
        <source>Test the rules on this study</source>
        <translation>Regels testen op dit onderzoek</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="235"/>
        <source>Would it run?</source>
        <translation>Zou het draaien?</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="235"/>
        <source>Why</source>
        <translation>Waarom</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="267"/>
        <source>unusable</source>
        <translation>onbruikbaar</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="269"/>
        <source>enabled</source>
        <translation>ingeschakeld</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="269"/>
        <source>disabled</source>
        <translation>uitgeschakeld</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="270"/>
        <source>unsigned</source>
        <translation>niet ondertekend</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="297"/>
        <source>Install an algorithm package</source>
        <translation>Een algoritmepakket installeren</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="297"/>
        <source>Packages (*.zip)</source>
        <translation>Pakketten (*.zip)</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="314"/>
        <source>Installed: %1.</source>
        <translation>Geïnstalleerd: %1.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="327"/>
        <source>%1 is enabled.</source>
        <translation>%1 is ingeschakeld.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="329"/>
        <source>%1 is disabled.</source>
        <translation>%1 is uitgeschakeld.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="341"/>
        <source>%1 is removed.</source>
        <translation>%1 is verwijderd.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="347"/>
        <source>Working…</source>
        <translation>Bezig…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="354"/>
        <source>Not done: %1</source>
        <translation>Niet uitgevoerd: %1</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="377"/>
        <source>Reading study %1…</source>
        <translation>Onderzoek %1 wordt gelezen…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="392"/>
        <source>yes: %1</source>
        <translation>ja: %1</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="392"/>
        <source>no</source>
        <translation>nee</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="399"/>
        <source>Study %1 would go to: %2.</source>
        <translation>Onderzoek %1 zou gaan naar: %2.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="401"/>
        <source>Study %1 would get no algorithm.</source>
        <translation>Onderzoek %1 zou geen algoritme krijgen.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="403"/>
        <source>There are no routing rules.</source>
        <translation>Er zijn geen routeringsregels.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/algorithms_screen.py" line="408"/>
        <source>Cannot test: %1</source>
        <translation>Testen niet mogelijk: %1</translation>
    </message>
</context>
<context>
    <name>AuditScreen</name>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="139"/>
        <source>Search event, detail or user…</source>
        <translation>Zoek op gebeurtenis, toelichting of gebruiker…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="140"/>
        <source>Export CSV…</source>
        <translation>Exporteren als CSV…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="141"/>
        <source>Last 24 hours</source>
        <translation>Afgelopen 24 uur</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="141"/>
        <source>Last 7 days</source>
        <translation>Afgelopen 7 dagen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="146"/>
        <source>Everything</source>
        <translation>Alles</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="150"/>
        <location filename="../../aifi_app/gui/audit_screen.py" line="152"/>
        <source>All categories</source>
        <translation>Alle categorieën</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="188"/>
        <source>Export audit log</source>
        <translation>Auditlog exporteren</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="188"/>
        <source>CSV files (*.csv)</source>
        <translation>CSV-bestanden (*.csv)</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="201"/>
        <source>%1 entries written to %2</source>
        <translation>%1 regels geschreven naar %2</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="204"/>
        <source>Export failed: %1</source>
        <translation>Exporteren mislukt: %1</translation>
    </message>
</context>
<context>
    <name>AuditTableModel</name>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="65"/>
        <source>Time</source>
        <translation>Tijd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="66"/>
        <source>Category</source>
        <translation>Categorie</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="67"/>
        <source>Event</source>
        <translation>Gebeurtenis</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="68"/>
        <source>Study</source>
        <translation>Onderzoek</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="69"/>
        <source>Job</source>
        <translation>Taak</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="70"/>
        <source>State change</source>
        <translation>Statuswijziging</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="71"/>
        <source>Detail</source>
        <translation>Toelichting</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/audit_screen.py" line="72"/>
        <source>By</source>
        <translation>Door</translation>
    </message>
</context>
<context>
    <name>DashboardScreen</name>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="128"/>
        <source>Chosen period</source>
        <translation>Gekozen periode</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="130"/>
        <source>Last %1 days</source>
        <translation>Laatste %1 dagen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="133"/>
        <source>From</source>
        <translation>Van</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="134"/>
        <source>to</source>
        <translation>tot en met</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="135"/>
        <source>Refresh</source>
        <translation>Vernieuwen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="136"/>
        <source>Write report…</source>
        <translation>Rapport schrijven…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="140"/>
        <source>Days are UTC days. Turnaround: last image received to results in PACS. Agreement, PPV and sensitivity rest on the verdicts given in the queue, with 95 % intervals (Wilson) and the number of jobs. *Sensitivity counts only reported misses, so it is an upper bound.</source>
        <translation>Dagen zijn UTC-dagen. Doorlooptijd: laatste beeld ontvangen tot resultaten in het PACS. Overeenstemming, PVW (positief voorspellende waarde) en sensitiviteit berusten op de oordelen in de wachtrij, met 95%-intervallen (Wilson) en het aantal taken. *Sensitiviteit telt alleen gemelde missers en is dus een bovengrens.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="175"/>
        <source>Computing…</source>
        <translation>Berekenen…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="191"/>
        <source>Could not compute the figures: %1</source>
        <translation>De cijfers konden niet worden berekend: %1</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="198"/>
        <source>Turnaround per algorithm</source>
        <translation>Doorlooptijd per algoritme</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="199"/>
        <source>seconds from the last image to the results in PACS</source>
        <translation>seconden van het laatste beeld tot de resultaten in het PACS</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="202"/>
        <source>Jobs per day</source>
        <translation>Taken per dag</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="202"/>
        <source>jobs</source>
        <translation>taken</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="203"/>
        <source>Availability</source>
        <translation>Beschikbaarheid</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="203"/>
        <source>percent of the observed time</source>
        <translation>procent van de waargenomen tijd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="204"/>
        <source>Agreement with people&apos;s verdicts</source>
        <translation>Overeenstemming met de oordelen van gebruikers</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="204"/>
        <source>percent</source>
        <translation>procent</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="210"/>
        <source>agreement</source>
        <translation>overeenstemming</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="211"/>
        <source>PPV</source>
        <translation>PVW</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="212"/>
        <source>sensitivity*</source>
        <translation>sensitiviteit*</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="213"/>
        <source>service</source>
        <translation>dienst</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="244"/>
        <source>%1 jobs · %2 delivered · %3 rejected · %4 failed · median turnaround %5 · service availability %6 · %7 judged</source>
        <translation>%1 taken · %2 afgeleverd · %3 afgewezen · %4 mislukt · mediane doorlooptijd %5 · beschikbaarheid dienst %6 · %7 beoordeeld</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="259"/>
        <source>Write the report into</source>
        <translation>Schrijf het rapport in</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="268"/>
        <source>Writing the report…</source>
        <translation>Rapport wordt geschreven…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/dashboard_screen.py" line="274"/>
        <source>Report written: %1</source>
        <translation>Rapport geschreven: %1</translation>
    </message>
</context>
<context>
    <name>Events</name>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="48"/>
        <source>first instance received</source>
        <translation>eerste beeld ontvangen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="49"/>
        <source>instance received again</source>
        <translation>beeld opnieuw ontvangen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="50"/>
        <source>study complete</source>
        <translation>onderzoek compleet</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="51"/>
        <source>process now (by hand)</source>
        <translation>nu verwerken (handmatig)</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="52"/>
        <source>assigned to algorithm</source>
        <translation>toegewezen aan algoritme</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="53"/>
        <source>no matching algorithm</source>
        <translation>geen passend algoritme</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="54"/>
        <source>routing failed</source>
        <translation>toewijzen mislukt</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="55"/>
        <source>job created</source>
        <translation>taak aangemaakt</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="56"/>
        <source>state changed</source>
        <translation>status gewijzigd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="57"/>
        <source>result stored in PACS</source>
        <translation>resultaat opgeslagen in PACS</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="58"/>
        <source>sending failed</source>
        <translation>verzenden mislukt</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="60"/>
        <source>result stored in PACS before the job failed</source>
        <translation>resultaat opgeslagen in PACS voordat de taak mislukte</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="59"/>
        <source>new attempt scheduled</source>
        <translation>nieuwe poging gepland</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="60"/>
        <source>images removed (retention)</source>
        <translation>beelden verwijderd (bewaartermijn)</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="61"/>
        <source>instance refused</source>
        <translation>beeld geweigerd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="62"/>
        <location filename="../../aifi_app/gui/states.py" line="68"/>
        <source>connection refused</source>
        <translation>verbinding geweigerd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="63"/>
        <source>appliance started</source>
        <translation>appliance gestart</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="64"/>
        <source>appliance stopped</source>
        <translation>appliance gestopt</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="69"/>
        <source>TLS connection refused</source>
        <translation>TLS-verbinding geweigerd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="70"/>
        <source>unencrypted HTTP allowed</source>
        <translation>onversleuteld HTTP toegestaan</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="71"/>
        <source>appliance stopped unexpectedly</source>
        <translation>appliance onverwacht gestopt</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="72"/>
        <source>settings changed</source>
        <translation>instellingen gewijzigd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="73"/>
        <source>nodes changed</source>
        <translation>nodes gewijzigd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="74"/>
        <source>passphrase set</source>
        <translation>wachtwoordzin ingesteld</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="75"/>
        <source>configuration unlocked</source>
        <translation>configuratie ontgrendeld</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="76"/>
        <source>configuration locked</source>
        <translation>configuratie vergrendeld</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="77"/>
        <source>algorithm installed</source>
        <translation>algoritme geïnstalleerd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="78"/>
        <source>algorithm removed</source>
        <translation>algoritme verwijderd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="79"/>
        <source>algorithm enabled</source>
        <translation>algoritme ingeschakeld</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="80"/>
        <source>algorithm disabled</source>
        <translation>algoritme uitgeschakeld</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="81"/>
        <source>audit log exported</source>
        <translation>auditlog geëxporteerd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="82"/>
        <source>recorded (late instances)</source>
        <translation>vastgelegd (late beelden)</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="83"/>
        <source>wrong passphrase</source>
        <translation>onjuiste wachtwoordzin</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="84"/>
        <source>instances recovered after an unclean stop</source>
        <translation>beelden hersteld na een onverwachte stop</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="87"/>
        <source>recovery of an instance failed</source>
        <translation>herstel van een beeld mislukt</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="88"/>
        <source>urgent finding</source>
        <translation>spoedeisende bevinding</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="89"/>
        <source>HL7 message queued</source>
        <translation>HL7-bericht in de wachtrij</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="90"/>
        <source>HL7 message acknowledged</source>
        <translation>HL7-bericht bevestigd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="91"/>
        <source>HL7 message: new attempt</source>
        <translation>HL7-bericht: nieuwe poging</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="92"/>
        <source>HL7 message failed</source>
        <translation>HL7-bericht mislukt</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="93"/>
        <source>HL7 messages queued again</source>
        <translation>HL7-berichten opnieuw in de wachtrij</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="94"/>
        <source>HL7 message text removed (retention)</source>
        <translation>HL7-berichttekst verwijderd (bewaartermijn)</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="99"/>
        <source>late instances received</source>
        <translation>late beelden ontvangen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="65"/>
        <source>verdict on the result</source>
        <translation>oordeel over het resultaat</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="66"/>
        <source>node reachable</source>
        <translation>node bereikbaar</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="67"/>
        <source>node not reachable</source>
        <translation>node niet bereikbaar</translation>
    </message>
</context>
<context>
    <name>FeedbackPanel</name>
    <message>
        <location filename="../../aifi_app/gui/feedback_panel.py" line="80"/>
        <source>Agree</source>
        <translation>Akkoord</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/feedback_panel.py" line="81"/>
        <source>Disagree: false positive</source>
        <translation>Oneens: fout-positief</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/feedback_panel.py" line="82"/>
        <source>Disagree: missed finding</source>
        <translation>Oneens: bevinding gemist</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/feedback_panel.py" line="83"/>
        <source>Unsure</source>
        <translation>Onzeker</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/feedback_panel.py" line="87"/>
        <source>Your verdict on the result</source>
        <translation>Uw oordeel over het resultaat</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/feedback_panel.py" line="90"/>
        <source>Comment (optional; no patient data)</source>
        <translation>Opmerking (optioneel; geen patiëntgegevens)</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/feedback_panel.py" line="91"/>
        <source>Initials</source>
        <translation>Initialen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/feedback_panel.py" line="130"/>
        <source>No verdict yet.</source>
        <translation>Nog geen oordeel.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/feedback_panel.py" line="134"/>
        <source>Last verdict: %1 (%2, %3)</source>
        <translation>Laatste oordeel: %1 (%2, %3)</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/feedback_panel.py" line="157"/>
        <source>Not recorded: %1</source>
        <translation>Niet vastgelegd: %1</translation>
    </message>
</context>
<context>
    <name>MainWindow</name>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="187"/>
        <source>AIFI Appliance</source>
        <translation>AIFI Appliance</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="188"/>
        <source>Queue</source>
        <translation>Wachtrij</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="189"/>
        <source>Audit log</source>
        <translation>Auditlog</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="190"/>
        <source>Nodes</source>
        <translation>Nodes</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="191"/>
        <source>Algorithms</source>
        <translation>Algoritmes</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="193"/>
        <source>&amp;File</source>
        <translation>&amp;Bestand</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="194"/>
        <source>Export audit log…</source>
        <translation>Auditlog exporteren…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="195"/>
        <source>&amp;Quit (stops receiving studies)</source>
        <translation>&amp;Afsluiten (stopt met ontvangen van onderzoeken)</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="196"/>
        <source>&amp;View</source>
        <translation>Beel&amp;d</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="197"/>
        <source>Language</source>
        <translation>Taal</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="198"/>
        <source>Keep running in the tray when closed</source>
        <translation>Bij sluiten actief blijven in het systeemvak</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="199"/>
        <source>Show the window</source>
        <translation>Venster tonen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="200"/>
        <source>&amp;Administration</source>
        <translation>&amp;Beheer</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="201"/>
        <source>Unlock configuration (application manager)…</source>
        <translation>Configuratie ontgrendelen (applicatiebeheer)…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="202"/>
        <source>Lock configuration</source>
        <translation>Configuratie vergrendelen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="215"/>
        <source>Unlock configuration</source>
        <translation>Configuratie ontgrendelen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="216"/>
        <source>Administrator passphrase:</source>
        <translation>Wachtwoordzin van de beheerder:</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="230"/>
        <source>Configuration unlocked.</source>
        <translation>Configuratie ontgrendeld.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="232"/>
        <source>Wrong passphrase.</source>
        <translation>Onjuiste wachtwoordzin.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="238"/>
        <source>No administrator passphrase is set up: run &apos;aifi-app admin set-passphrase&apos;.</source>
        <translation>Er is geen beheerderswachtwoordzin ingesteld: voer &apos;aifi-app admin set-passphrase&apos; uit.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="241"/>
        <source>The passphrase could not be checked: %1</source>
        <translation>De wachtwoordzin kon niet worden gecontroleerd: %1</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="258"/>
        <source>Configuration locked after inactivity.</source>
        <translation>Configuratie vergrendeld na inactiviteit.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="276"/>
        <source>Application manager (%1)</source>
        <translation>Applicatiebeheer (%1)</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="279"/>
        <source>MBB&apos;er (configuration locked)</source>
        <translation>MBB&apos;er (configuratie vergrendeld)</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="310"/>
        <source>Disk space low: %1 (new studies are refused)</source>
        <translation>Weinig schijfruimte: %1 (nieuwe onderzoeken worden geweigerd)</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="326"/>
        <source>all well</source>
        <translation>alles in orde</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="327"/>
        <source>warnings</source>
        <translation>waarschuwingen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="328"/>
        <source>failures</source>
        <translation>storingen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="332"/>
        <source>%1 on port %2 · %3 busy · %4 delivered · %5 failed · %6</source>
        <translation>%1 op poort %2 · %3 bezig · %4 afgeleverd · %5 mislukt · %6</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/main_window.py" line="192"/>
        <source>Dashboard</source>
        <translation>Dashboard</translation>
    </message>
</context>
<context>
    <name>NodeDialog</name>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="55"/>
        <source>Remote node</source>
        <translation>Externe node</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="62"/>
        <source>PACS</source>
        <translation>PACS</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="62"/>
        <source>AI vendor</source>
        <translation>AI-leverancier</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="62"/>
        <source>RIS</source>
        <translation>RIS</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="77"/>
        <source>Name</source>
        <translation>Naam</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="78"/>
        <source>Role</source>
        <translation>Rol</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="79"/>
        <source>Protocol</source>
        <translation>Protocol</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="80"/>
        <source>AE title</source>
        <translation>AE-titel</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="81"/>
        <source>Host</source>
        <translation>Host</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="82"/>
        <source>Port</source>
        <translation>Poort</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="83"/>
        <source>URL</source>
        <translation>URL</translation>
    </message>
</context>
<context>
    <name>NodesScreen</name>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="227"/>
        <source>This appliance</source>
        <translation>Deze appliance</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="230"/>
        <source>(none besides the nodes)</source>
        <translation>(geen behalve de nodes)</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="231"/>
        <source>(none: results wait)</source>
        <translation>(geen: resultaten wachten)</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="233"/>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="244"/>
        <source>AE title</source>
        <translation>AE-titel</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="234"/>
        <source>Listening on</source>
        <translation>Luistert op</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="235"/>
        <source>Allowed senders</source>
        <translation>Toegestane verzenders</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="236"/>
        <source>Results go to</source>
        <translation>Resultaten gaan naar</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="239"/>
        <source>Remote nodes</source>
        <translation>Externe nodes</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="242"/>
        <source>Name</source>
        <translation>Naam</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="243"/>
        <source>Protocol</source>
        <translation>Protocol</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="245"/>
        <source>Host</source>
        <translation>Host</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="246"/>
        <source>Port</source>
        <translation>Poort</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="247"/>
        <source>URL</source>
        <translation>URL</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="248"/>
        <source>Role</source>
        <translation>Rol</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="249"/>
        <source>Last test</source>
        <translation>Laatste test</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="252"/>
        <source>Test connection</source>
        <translation>Verbinding testen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="253"/>
        <source>Add…</source>
        <translation>Toevoegen…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="254"/>
        <source>Edit…</source>
        <translation>Wijzigen…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="255"/>
        <source>Delete</source>
        <translation>Verwijderen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="263"/>
        <source>Started without a settings file (--config): nodes cannot be changed here.</source>
        <translation>Gestart zonder instellingenbestand (--config): nodes kunnen hier niet worden gewijzigd.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="267"/>
        <source>Adding, changing and deleting nodes needs the application manager: Administration &gt; Unlock configuration.</source>
        <translation>Nodes toevoegen, wijzigen en verwijderen kan alleen applicatiebeheer: Beheer &gt; Configuratie ontgrendelen.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="271"/>
        <source>Changes are written to %1 and used at once.</source>
        <translation>Wijzigingen worden in %1 opgeslagen en direct gebruikt.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="289"/>
        <source>Testing %1 (%2, %3)…</source>
        <translation>%1 wordt getest (%2, %3)…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="307"/>
        <source>Connection OK: %1 (%2 ms).</source>
        <translation>Verbinding in orde: %1 (%2 ms).</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="325"/>
        <source>Delete node</source>
        <translation>Node verwijderen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="326"/>
        <source>Delete the remote node %1 from the settings?</source>
        <translation>De externe node %1 uit de instellingen verwijderen?</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="360"/>
        <source>Saving…</source>
        <translation>Opslaan…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="371"/>
        <source>Saved; the appliance uses the new nodes now.</source>
        <translation>Opgeslagen; de appliance gebruikt de nieuwe nodes nu.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="374"/>
        <source>Not saved: %1</source>
        <translation>Niet opgeslagen: %1</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="258"/>
        <source>No remote nodes in the settings file.</source>
        <translation>Geen externe nodes in het instellingenbestand.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="308"/>
        <source>OK</source>
        <translation>In orde</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="310"/>
        <source>No connection with %1: %2</source>
        <translation>Geen verbinding met %1: %2</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/nodes_screen.py" line="312"/>
        <source>no connection</source>
        <translation>geen verbinding</translation>
    </message>
</context>
<context>
    <name>QueueScreen</name>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="261"/>
        <source>State:</source>
        <translation>Status:</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="262"/>
        <source>Algorithm:</source>
        <translation>Algoritme:</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="264"/>
        <source>Search description, modality, algorithm, reason, job number…</source>
        <translation>Zoek op omschrijving, modaliteit, algoritme, reden, taaknummer…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="269"/>
        <location filename="../../aifi_app/gui/queue_screen.py" line="332"/>
        <source>All</source>
        <translation>Alle</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="270"/>
        <source>Needs attention</source>
        <translation>Vraagt aandacht</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="280"/>
        <source>Any time</source>
        <translation>Altijd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="281"/>
        <source>Today</source>
        <translation>Vandaag</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="282"/>
        <source>Last 7 days</source>
        <translation>Afgelopen 7 dagen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="285"/>
        <source>Details</source>
        <translation>Details</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="286"/>
        <source>Time</source>
        <translation>Tijd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="286"/>
        <source>Event</source>
        <translation>Gebeurtenis</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="286"/>
        <source>Detail</source>
        <translation>Toelichting</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="287"/>
        <source>Retry</source>
        <translation>Opnieuw proberen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="288"/>
        <source>Cancel job</source>
        <translation>Taak annuleren</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="289"/>
        <source>Process now</source>
        <translation>Nu verwerken</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="290"/>
        <source>Resend to PACS</source>
        <translation>Opnieuw naar PACS sturen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="291"/>
        <source>Send to this algorithm</source>
        <translation>Naar dit algoritme sturen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="292"/>
        <source>Timeline</source>
        <translation>Tijdlijn</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="293"/>
        <source>Instances</source>
        <translation>Beelden</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="294"/>
        <source>Result</source>
        <translation>Resultaat</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="297"/>
        <source>Series</source>
        <translation>Serie</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="298"/>
        <source>Kind</source>
        <translation>Soort</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="299"/>
        <source>Size</source>
        <translation>Grootte</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="300"/>
        <source>Received</source>
        <translation>Ontvangen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="301"/>
        <source>From</source>
        <translation>Van</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="304"/>
        <source>Object</source>
        <translation>Object</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="304"/>
        <source>State</source>
        <translation>Status</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="304"/>
        <source>Sent</source>
        <translation>Verzonden</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="333"/>
        <source>All senders</source>
        <translation>Alle verzenders</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="414"/>
        <source>Select a study or job to see its timeline.</source>
        <translation>Kies een onderzoek of taak om het verloop te zien.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="418"/>
        <source>Study %1</source>
        <translation>Onderzoek %1</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="419"/>
        <source>job %1</source>
        <translation>taak %1</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="421"/>
        <source>%1 instance(s) from %2</source>
        <translation>%1 beeld(en) van %2</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="429"/>
        <source>Reason: %1</source>
        <translation>Reden: %1</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="501"/>
        <source>sent</source>
        <translation>verzonden</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="501"/>
        <source>to send</source>
        <translation>te verzenden</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="515"/>
        <source>Loading the preview…</source>
        <translation>Voorbeeld wordt geladen…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="531"/>
        <source>No preview: %1</source>
        <translation>Geen voorbeeld: %1</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="533"/>
        <source>No result image.</source>
        <translation>Geen resultaatbeeld.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="580"/>
        <source>Job %1 is %2 again.</source>
        <translation>Taak %1 is weer %2.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="593"/>
        <source>Job %1 is cancelled.</source>
        <translation>Taak %1 is geannuleerd.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="608"/>
        <source>Study %1 will be processed now.</source>
        <translation>Onderzoek %1 wordt nu verwerkt.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="610"/>
        <source>Study %1 is no longer receiving.</source>
        <translation>Onderzoek %1 wordt niet meer ontvangen.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="622"/>
        <source>%1 result object(s) of job %2 will be sent to the PACS again.</source>
        <translation>%1 resultaatobject(en) van taak %2 worden opnieuw naar het PACS gestuurd.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="636"/>
        <source>Study %1 goes to %2 as job %3.</source>
        <translation>Onderzoek %1 gaat naar %2 als taak %3.</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="644"/>
        <source>Working…</source>
        <translation>Bezig…</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_screen.py" line="652"/>
        <source>Not done: %1</source>
        <translation>Niet uitgevoerd: %1</translation>
    </message>
</context>
<context>
    <name>QueueTableModel</name>
    <message>
        <location filename="../../aifi_app/gui/queue_model.py" line="113"/>
        <source>Urgent</source>
        <translation>Spoed</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_model.py" line="377"/>
        <source>Received</source>
        <translation>Ontvangen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_model.py" line="378"/>
        <source>Modality</source>
        <translation>Modaliteit</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_model.py" line="379"/>
        <source>Study description</source>
        <translation>Onderzoeksomschrijving</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_model.py" line="380"/>
        <source>Algorithm</source>
        <translation>Algoritme</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_model.py" line="381"/>
        <source>State</source>
        <translation>Status</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_model.py" line="382"/>
        <source>Time in stage</source>
        <translation>Tijd in deze stap</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_model.py" line="383"/>
        <source>Priority</source>
        <translation>Prioriteit</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_model.py" line="384"/>
        <source>RIS</source>
        <translation>RIS</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_model.py" line="385"/>
        <source>Reason</source>
        <translation>Reden</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_model.py" line="440"/>
        <source>Acknowledged</source>
        <translation>Bevestigd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_model.py" line="442"/>
        <source>Waiting</source>
        <translation>Wachtend</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/queue_model.py" line="444"/>
        <source>Failed</source>
        <translation>Mislukt</translation>
    </message>
</context>
<context>
    <name>States</name>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="28"/>
        <source>receiving</source>
        <translation>wordt ontvangen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="29"/>
        <source>complete</source>
        <translation>compleet</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="30"/>
        <source>routed</source>
        <translation>toegewezen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="31"/>
        <source>no matching algorithm</source>
        <translation>geen passend algoritme</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="32"/>
        <source>recorded (late)</source>
        <translation>vastgelegd (te laat)</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="33"/>
        <source>queued</source>
        <translation>in de wachtrij</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="34"/>
        <source>pseudonymised</source>
        <translation>gepseudonimiseerd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="35"/>
        <source>at the algorithm</source>
        <translation>bij het algoritme</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="36"/>
        <source>result ready</source>
        <translation>resultaat klaar</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="37"/>
        <source>delivered</source>
        <translation>afgeleverd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="38"/>
        <source>rejected</source>
        <translation>afgewezen</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="39"/>
        <source>failed</source>
        <translation>mislukt</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/states.py" line="40"/>
        <source>cancelled</source>
        <translation>geannuleerd</translation>
    </message>
</context>
<context>
    <name>StatusTray</name>
    <message>
        <location filename="../../aifi_app/gui/tray.py" line="86"/>
        <source>AIFI Appliance: all well</source>
        <translation>AIFI Appliance: alles in orde</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/tray.py" line="87"/>
        <source>AIFI Appliance: studies need attention</source>
        <translation>AIFI Appliance: onderzoeken vragen aandacht</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/tray.py" line="88"/>
        <source>AIFI Appliance: jobs failed</source>
        <translation>AIFI Appliance: taken mislukt</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/tray.py" line="91"/>
        <source>Disk space low: %1</source>
        <translation>Weinig schijfruimte: %1</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/tray.py" line="101"/>
        <source>Disk space low: new studies are refused</source>
        <translation>Weinig schijfruimte: nieuwe onderzoeken worden geweigerd</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/tray.py" line="125"/>
        <source>Job %1 failed</source>
        <translation>Taak %1 mislukt</translation>
    </message>
    <message>
        <location filename="../../aifi_app/gui/tray.py" line="134"/>
        <source>Urgent finding in job %1</source>
        <translation>Urgente bevinding in taak %1</translation>
    </message>
</context>
</TS>
