
'use strict';
{
  const globals = this;
  const django = globals.django || (globals.django = {});

  
  django.pluralidx = function(n) {
    const v = n == 1 ? 0 : n != 0 && n % 1000000 == 0 ? 1 : 2;
    if (typeof v === 'boolean') {
      return v ? 1 : 0;
    } else {
      return v;
    }
  };
  

  /* gettext library */

  django.catalog = django.catalog || {};
  
  const newcatalog = {
    "%(reason)s Or enter a code.": "%(reason)s O introduzca un c\u00f3digo.",
    "%(reason)s Try again, or enter a code below.": "%(reason)s Vuelva a intentarlo o introduzca un c\u00f3digo m\u00e1s abajo.",
    "%(reason)s Try again, or enter a code.": "%(reason)s Vuelva a intentarlo o introduzca un c\u00f3digo.",
    "%(sel)s of %(cnt)s selected": [
      "%(sel)s de %(cnt)s seleccionado",
      "%(sel)s de  %(cnt)s seleccionados",
      "%(sel)s de  %(cnt)s seleccionados"
    ],
    "%(zone)s (this browser)": "%(zone)s (este navegador)",
    "%s selected option not visible": [
      "%s opci\u00f3n seleccionada no visible",
      "%s opciones seleccionadas no visibles",
      "%s opciones seleccionadas no visibles"
    ],
    "(click to clear)": "(click para limpiar)",
    "6 a.m.": "6 a.m.",
    "6 p.m.": "6 p.m.",
    "An error occurred during registration.": "Se produjo un error durante el registro.",
    "An error occurred during verification.": "Se produjo un error durante la verificaci\u00f3n.",
    "April": "Abril",
    "August": "Agosto",
    "Available %s": "%s Disponibles",
    "Cancel": "Cancelar",
    "Choose %s by selecting them and then select the \"Choose\" arrow button.": "Elija %s seleccion\u00e1ndolos y luego use el bot\u00f3n \"Elegir\".",
    "Choose a Date": "Elija una Fecha",
    "Choose a Time": "Elija una Hora",
    "Choose a time": "Elija una hora",
    "Choose all %s": "Seleccionar todos %s",
    "Choose selected %s": "Elegir %s seleccionados",
    "Chosen %s": "%s elegidos",
    "December": "Diciembre",
    "Every block choice is taken": "Ya no quedan opciones de bloque libres",
    "F, M or X": "F, M o X",
    "February": "Febrero",
    "Filter": "Filtro",
    "Finishing registration...": "Finalizando registro\u2026",
    "Finishing verification...": "Finalizando verificaci\u00f3n\u2026",
    "Follow your browser's prompt to create the passkey\u2026": "Siga las indicaciones de su navegador para crear la llave de acceso\u2026",
    "Follow your browser's prompt to use your passkey\u2026": "Siga las indicaciones de su navegador para usar su llave de acceso\u2026",
    "Friday": "Viernes",
    "It will be sent %(when)s.": "Se enviar\u00e1 %(when)s.",
    "January": "Enero",
    "July": "Julio",
    "June": "Junio",
    "March": "Marzo",
    "May": "Mayo",
    "Midnight": "Medianoche",
    "Monday": "Lunes",
    "No passkey was added: %(reason)s": "No se a\u00f1adi\u00f3 ninguna llave de acceso: %(reason)s",
    "No passkey was added: the request was cancelled, timed out or refused by the browser.": "No se a\u00f1adi\u00f3 ninguna llave de acceso: la solicitud se cancel\u00f3, caduc\u00f3 o el navegador la rechaz\u00f3.",
    "Noon": "Mediod\u00eda",
    "Note: You are %s hour ahead of server time.": [
      "Nota: Usted esta a %s horas por delante de la hora del servidor.",
      "Nota: Usted va %s horas por delante de la hora del servidor.",
      "Nota: Usted va %s horas por delante de la hora del servidor."
    ],
    "Note: You are %s hour behind server time.": [
      "Nota: Usted esta a %s hora de retraso de tiempo de servidor.",
      "Nota: Usted va %s horas por detr\u00e1s de la hora del servidor.",
      "Nota: Usted va %s horas por detr\u00e1s de la hora del servidor."
    ],
    "November": "Noviembre",
    "Now": "Ahora",
    "October": "Octubre",
    "Passkey accepted.": "Llave de acceso aceptada.",
    "Reading every entry and recomputing its hash. Keep this page open: the result appears here.": "Leyendo cada entrada y recalculando su hash. Mantenga esta p\u00e1gina abierta: el resultado aparecer\u00e1 aqu\u00ed.",
    "Register a Passkey": "Registrar una clave de acceso",
    "Registering...": "Registrando\u2026",
    "Registration aborted or not allowed.": "Registro abortado o no permitido.",
    "Registration aborted.": "Registro abortado.",
    "Registration failed. A server error occurred.": "Error en el registro. Se produjo un error en el servidor.",
    "Registration failed. A technical problem occurred that prevents you from registering a Passkey for this site.": "Error en el registro. Se produjo un problema t\u00e9cnico que le impide registrar una clave de acceso para este sitio.",
    "Registration failed. An unknown error occurred.": "Error en el registro. Se produjo un error desconocido.",
    "Registration failed. The server was unable to verify this passkey.": "Error en el registro. El servidor no pudo verificar esta clave.",
    "Registration failed. Unable to fetch registration options from server.": "Error en el registro. No se pueden obtener las opciones de registro del servidor.",
    "Registration failed. You most likely already have a Passkey registered for this site.": "Error en el registro. Probablemente ya tenga una clave de acceso registrada para este sitio",
    "Registration successful!": "\u00a1Registro exitoso!",
    "Remove %s by selecting them and then select the \"Remove\" arrow button.": "Eliminar %s seleccion\u00e1ndolos y luego use el bot\u00f3n \"Eliminar\".",
    "Remove all %s": "Eliminar todos %s",
    "Remove selected %s": "Eliminar %s seleccionados",
    "Saturday": "S\u00e1bado",
    "September": "Septiembre",
    "Step %(position)s: email preview (HTML part)": "Paso %(position)s: vista previa del correo (parte HTML)",
    "Sunday": "Domingo",
    "That passkey was not accepted: %(reason)s Try again, or enter a code below.": "No se acept\u00f3 esa llave de acceso: %(reason)s Vuelva a intentarlo o introduzca un c\u00f3digo m\u00e1s abajo.",
    "That passkey was not accepted: %(reason)s Try again, or enter a code.": "No se acept\u00f3 esa llave de acceso: %(reason)s Vuelva a intentarlo o introduzca un c\u00f3digo.",
    "That time does not exist in %(zone)s: the clocks go forward then.": "Esa hora no existe en %(zone)s: ese d\u00eda se adelantan los relojes.",
    "That time has already passed.": "Esa hora ya pas\u00f3.",
    "The browser could not use a passkey (%(error)s).": "El navegador no pudo usar una llave de acceso (%(error)s).",
    "The browser could not use a passkey.": "El navegador no pudo usar una llave de acceso.",
    "The browser refused passkeys for this address (they need HTTPS, or localhost).": "El navegador rechaz\u00f3 las llaves de acceso para esta direcci\u00f3n (necesitan HTTPS o localhost).",
    "The passkey was not used: the request was cancelled, timed out or refused by the browser.": "No se us\u00f3 la llave de acceso: la solicitud se cancel\u00f3, caduc\u00f3 o el navegador la rechaz\u00f3.",
    "The server could not check the passkey just now.": "El servidor no pudo comprobar la llave de acceso en este momento.",
    "The server did not accept the passkey.": "El servidor no acept\u00f3 la llave de acceso.",
    "This authenticator already holds a passkey for your account.": "Este autenticador ya tiene una llave de acceso para su cuenta.",
    "This browser cannot use passkeys.": "Este navegador no puede usar llaves de acceso.",
    "This browser cannot use passkeys: enter a code.": "Este navegador no puede usar llaves de acceso: introduzca un c\u00f3digo.",
    "This browser or authenticator does not support the kind of passkey asked for.": "Este navegador o autenticador no admite el tipo de llave de acceso solicitado.",
    "Thursday": "Jueves",
    "Today": "Hoy",
    "Tomorrow": "Ma\u00f1ana",
    "Tuesday": "Martes",
    "Type into this box to filter down the list of available %s.": "Escriba en este cuadro para filtrar la lista de %s disponibles",
    "Type into this box to filter down the list of selected %s.": "Escriba en este cuadro para filtrar la lista de %s seleccionados.",
    "Verification aborted.": "Verificaci\u00f3n abortada.",
    "Verification canceled or not allowed.": "Verificaci\u00f3n cancelada o no permitida.",
    "Verification failed. A server error occurred.": "Error de verificaci\u00f3n. Se produjo un error en el servidor.",
    "Verification failed. An unknown error occurred.": "Error de verificaci\u00f3n. Se produjo un error desconocido.",
    "Verification failed. An unknown server error occurred.": "Error de verificaci\u00f3n. Se produjo un error desconocido en el servidor.",
    "Verification failed. Could not retrieve parameters from the server.": "Error en la verificaci\u00f3n. No se pudieron recuperar los par\u00e1metros del servidor.",
    "Verification successful!": "\u00a1Verificaci\u00f3n exitosa!",
    "Verify with Passkey": "Verificar con clave de acceso",
    "Verifying...": "Verificando\u2026",
    "Verifying\u2026": "Verificando\u2026",
    "Wednesday": "Mi\u00e9rcoles",
    "Yesterday": "Ayer",
    "You have selected an action, and you haven\u2019t made any changes on individual fields. You\u2019re probably looking for the Go button rather than the Save button.": "Ha seleccionado una acci\u00f3n y no ha realizado ning\u00fan cambio en campos individuales. Probablemente est\u00e9 buscando el bot\u00f3n 'Ir' en lugar del bot\u00f3n 'Guardar'.",
    "You have selected an action, but you haven\u2019t saved your changes to individual fields yet. Please click OK to save. You\u2019ll need to re-run the action.": "Ha seleccionado una acci\u00f3n, pero a\u00fan no ha guardado los cambios en los campos individuales. Haga clic en Aceptar para guardar. Deber\u00e1 volver a ejecutar la acci\u00f3n.",
    "You have unsaved changes on individual editable fields. If you run an action, your unsaved changes will be lost.": "Tiene cambios sin guardar en campos editables individuales. Si ejecuta una acci\u00f3n, los cambios no guardados se perder\u00e1n.",
    "Your session has ended. Reload the page and sign in again.": "Su sesi\u00f3n ha terminado. Vuelva a cargar la p\u00e1gina e inicie sesi\u00f3n de nuevo.",
    "abbrev. day Friday\u0004Fri": "Vie",
    "abbrev. day Monday\u0004Mon": "Lun",
    "abbrev. day Saturday\u0004Sat": "S\u00e1b",
    "abbrev. day Sunday\u0004Sun": "Dom",
    "abbrev. day Thursday\u0004Thur": "Jue",
    "abbrev. day Tuesday\u0004Tue": "Mar",
    "abbrev. day Wednesday\u0004Wed": "Mie",
    "abbrev. month April\u0004Apr": "Abr",
    "abbrev. month August\u0004Aug": "Ago",
    "abbrev. month December\u0004Dec": "Dic",
    "abbrev. month February\u0004Feb": "Feb",
    "abbrev. month January\u0004Jan": "Ene",
    "abbrev. month July\u0004Jul": "Jul",
    "abbrev. month June\u0004Jun": "Jun",
    "abbrev. month March\u0004Mar": "Mar",
    "abbrev. month May\u0004May": "May",
    "abbrev. month November\u0004Nov": "Nov",
    "abbrev. month October\u0004Oct": "Oct",
    "abbrev. month September\u0004Sep": "Sep",
    "before YYYY-MM-DD": "antes de AAAA-MM-DD",
    "e.g. %(example)s": "p. ej., %(example)s",
    "from YYYY-MM-DD": "desde AAAA-MM-DD",
    "highest age": "edad m\u00e1xima",
    "in %(count)s day": [
      "dentro de %(count)s d\u00eda",
      "dentro de %(count)s d\u00edas",
      "dentro de %(count)s d\u00edas"
    ],
    "in %(count)s hour": [
      "dentro de %(count)s hora",
      "dentro de %(count)s horas",
      "dentro de %(count)s horas"
    ],
    "in %(count)s minute": [
      "dentro de %(count)s minuto",
      "dentro de %(count)s minutos",
      "dentro de %(count)s minutos"
    ],
    "in %(count)s month": [
      "dentro de %(count)s mes",
      "dentro de %(count)s meses",
      "dentro de %(count)s meses"
    ],
    "in %(count)s year": [
      "dentro de %(count)s a\u00f1o",
      "dentro de %(count)s a\u00f1os",
      "dentro de %(count)s a\u00f1os"
    ],
    "lowest age": "edad m\u00ednima",
    "one letter Friday\u0004F": "V",
    "one letter Monday\u0004M": "L",
    "one letter Saturday\u0004S": "S",
    "one letter Sunday\u0004S": "D",
    "one letter Thursday\u0004T": "J",
    "one letter Tuesday\u0004T": "M",
    "one letter Wednesday\u0004W": "M",
    "step %(number)s": "paso %(number)s"
  };
  for (const key in newcatalog) {
    django.catalog[key] = newcatalog[key];
  }
  

  if (!django.jsi18n_initialized) {
    django.gettext = function(msgid) {
      const value = django.catalog[msgid];
      if (typeof value === 'undefined') {
        return msgid;
      } else {
        return (typeof value === 'string') ? value : value[0];
      }
    };

    django.ngettext = function(singular, plural, count) {
      const value = django.catalog[singular];
      if (typeof value === 'undefined') {
        return (count == 1) ? singular : plural;
      } else {
        return value.constructor === Array ? value[django.pluralidx(count)] : value;
      }
    };

    django.gettext_noop = function(msgid) { return msgid; };

    django.pgettext = function(context, msgid) {
      let value = django.gettext(context + '\x04' + msgid);
      if (value.includes('\x04')) {
        value = msgid;
      }
      return value;
    };

    django.npgettext = function(context, singular, plural, count) {
      let value = django.ngettext(context + '\x04' + singular, context + '\x04' + plural, count);
      if (value.includes('\x04')) {
        value = django.ngettext(singular, plural, count);
      }
      return value;
    };

    django.interpolate = function(fmt, obj, named) {
      if (named) {
        return fmt.replace(/%\(\w+\)s/g, function(match){return String(obj[match.slice(2,-2)])});
      } else {
        return fmt.replace(/%s/g, function(match){return String(obj.shift())});
      }
    };


    /* formatting library */

    django.formats = {
    "DATETIME_FORMAT": "j \\d\\e F \\d\\e Y \\a \\l\\a\\s H:i",
    "DATETIME_INPUT_FORMATS": [
      "%d/%m/%Y %H:%M:%S",
      "%d/%m/%Y %H:%M:%S.%f",
      "%d/%m/%Y %H:%M",
      "%d/%m/%y %H:%M:%S",
      "%d/%m/%y %H:%M:%S.%f",
      "%d/%m/%y %H:%M",
      "%Y-%m-%d %H:%M:%S",
      "%Y-%m-%d %H:%M:%S.%f",
      "%Y-%m-%d %H:%M",
      "%Y-%m-%d"
    ],
    "DATE_FORMAT": "j \\d\\e F \\d\\e Y",
    "DATE_INPUT_FORMATS": [
      "%d/%m/%Y",
      "%d/%m/%y",
      "%Y-%m-%d"
    ],
    "DECIMAL_SEPARATOR": ",",
    "FIRST_DAY_OF_WEEK": 1,
    "MONTH_DAY_FORMAT": "j \\d\\e F",
    "NUMBER_GROUPING": 3,
    "SHORT_DATETIME_FORMAT": "d/m/Y H:i",
    "SHORT_DATE_FORMAT": "d/m/Y",
    "THOUSAND_SEPARATOR": "\u00a0",
    "TIME_FORMAT": "H:i",
    "TIME_INPUT_FORMATS": [
      "%H:%M:%S",
      "%H:%M:%S.%f",
      "%H:%M"
    ],
    "YEAR_MONTH_FORMAT": "F \\d\\e Y"
  };

    django.get_format = function(format_type) {
      const value = django.formats[format_type];
      if (typeof value === 'undefined') {
        return format_type;
      } else {
        return value;
      }
    };

    /* add to global namespace */
    globals.pluralidx = django.pluralidx;
    globals.gettext = django.gettext;
    globals.ngettext = django.ngettext;
    globals.gettext_noop = django.gettext_noop;
    globals.pgettext = django.pgettext;
    globals.npgettext = django.npgettext;
    globals.interpolate = django.interpolate;
    globals.get_format = django.get_format;

    django.jsi18n_initialized = true;
  }
};

